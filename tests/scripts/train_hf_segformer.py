"""SegFormer trained the way most people train it: Transformers' `SegformerForSemanticSegmentation` under a
`Trainer`, built from a config (no weights: nothing is downloaded), on a `Dataset` of image and mask files (the
CamVid layout: train/, trainannot/) with albumentations, 6 classes, lr 6e-05 (the SegFormer paper's),
`remove_unused_columns=False` as the docs advise for image data."""

import argparse
import time
from pathlib import Path

import albumentations as A
import cv2
import epoch_clock  # the user's own timer log, beside the script
import numpy as np
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation, Trainer, TrainingArguments


class RoadDataset(torch.utils.data.Dataset):
    def __init__(self, root: str, size: int, split: str = "train") -> None:
        self.images = sorted(Path(root, split).glob("*.png"))
        self.tf = A.Compose([A.RandomCrop(size, size), A.HorizontalFlip(p=0.5),
                             A.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        img = cv2.cvtColor(cv2.imread(str(self.images[i])), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(Path(str(self.images[i].parent) + "annot", self.images[i].name)), cv2.IMREAD_GRAYSCALE)
        out = self.tf(image=img, mask=mask)
        return {"pixel_values": torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
                "labels": torch.from_numpy(np.minimum(out["mask"], 5).astype(np.int64))}


def mean_iou(pred):
    """compute_metrics: the mean IoU image by image in numpy (the logits upsampled to the masks' size first)."""
    logits, labels = pred.predictions, pred.label_ids
    scores = []
    for lg, lb in zip(logits, labels):
        up = torch.nn.functional.interpolate(torch.from_numpy(lg)[None], size=lb.shape, mode="bilinear")
        p = up[0].argmax(0).numpy()
        ious = [((p == c) & (lb == c)).sum() / max(1, ((p == c) | (lb == c)).sum()) for c in range(6)
                if (lb == c).any()]
        scores.append(float(np.mean(ious)) if ious else 0.0)
    return {"miou": float(np.mean(scores))}


class TimedTrainer(Trainer):
    """The user's own clocks around evaluation and checkpoint writes, printed once an epoch after its save:
    `epoch 2 val 0.412 save 0.118`."""

    val_s = 0.0

    def evaluate(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return super().evaluate(*a, **k)
        finally:
            self.val_s += time.perf_counter() - t0

    def _save_checkpoint(self, model, trial):
        t0 = time.perf_counter()
        super()._save_checkpoint(model, trial)
        epoch_clock.say(f"epoch {round(self.state.epoch) - 1} val {self.val_s:.4f} save {time.perf_counter() - t0:.4f}")
        self.val_s = 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--decoder-hidden-size", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=50)
    ap.add_argument("--out", default="segformer-out")
    ap.add_argument("--eval", action="store_true", help="evaluate (mean IoU) and save a checkpoint every epoch")
    ap.add_argument("--log", default=None, help="also append the epoch timers to this file")
    args = ap.parse_args()
    epoch_clock.LOG = args.log
    config = SegformerConfig(num_labels=6, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 80, 128],
                             decoder_hidden_size=args.decoder_hidden_size, num_attention_heads=[1, 2, 5, 8])
    model = SegformerForSemanticSegmentation(config)
    every = {"eval_strategy": "epoch", "save_strategy": "epoch", "per_device_eval_batch_size": args.batch_size} \
        if args.eval else {"save_strategy": "no"}
    targs = TrainingArguments(output_dir=args.out, per_device_train_batch_size=args.batch_size,
                              learning_rate=6e-5, num_train_epochs=args.epochs, dataloader_num_workers=args.workers,
                              remove_unused_columns=False, report_to=[], logging_steps=50,
                              use_cpu=True, seed=0, **every)
    cls = TimedTrainer if args.eval else Trainer
    cls(model=model, args=targs, train_dataset=RoadDataset(args.data, args.size),
        eval_dataset=RoadDataset(args.data, args.size, "val") if args.eval else None,
        compute_metrics=mean_iou if args.eval else None).train()


if __name__ == "__main__":
    main()

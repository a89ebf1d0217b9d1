"""SegFormer trained the way most people train it: Transformers' `SegformerForSemanticSegmentation` under a
`Trainer`, built from a config (no weights: nothing is downloaded), on a `Dataset` of image and mask files (the
CamVid layout: train/, trainannot/) with albumentations, 6 classes, lr 6e-05 (the SegFormer paper's),
`remove_unused_columns=False` as the docs advise for image data."""

import argparse
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation, Trainer, TrainingArguments


class RoadDataset(torch.utils.data.Dataset):
    def __init__(self, root: str, size: int) -> None:
        self.images = sorted(Path(root, "train").glob("*.png"))
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--decoder-hidden-size", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=50)
    ap.add_argument("--out", default="segformer-out")
    args = ap.parse_args()
    config = SegformerConfig(num_labels=6, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 80, 128],
                             decoder_hidden_size=args.decoder_hidden_size, num_attention_heads=[1, 2, 5, 8])
    model = SegformerForSemanticSegmentation(config)
    targs = TrainingArguments(output_dir=args.out, per_device_train_batch_size=args.batch_size,
                              learning_rate=6e-5, num_train_epochs=args.epochs, dataloader_num_workers=args.workers,
                              remove_unused_columns=False, report_to=[], save_strategy="no", logging_steps=50,
                              use_cpu=True, seed=0)
    Trainer(model=model, args=targs, train_dataset=RoadDataset(args.data, args.size)).train()


if __name__ == "__main__":
    main()

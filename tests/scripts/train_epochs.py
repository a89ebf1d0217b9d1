"""A user's whole training loop, epoch by epoch: train, validate with a mean IoU computed per image in Python
(the confusion matrix filled pixel class by class on the CPU, as many tutorials write it), save a checkpoint,
print the epoch's own timers. The epoch's parts are what `attach --epochs` must account.

It prints one line an epoch: `epoch 3 time 4.210 train 2.100 val 1.800 save 0.120 miou 0.0312` (its own clocks,
`time.perf_counter`), which the tests compare with benchbench's accounting.
"""

import argparse
import glob
import os
import time

import epoch_clock  # the user's own timer log, beside the script
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class CamVidDataset(Dataset):
    def __init__(self, root, split="train", size=(32, 32)):
        self.images = sorted(glob.glob(os.path.join(root, split, "*.png")))
        self.masks = [os.path.join(root, split + "annot", os.path.basename(p)) for p in self.images]
        self.size = size
        self.transform = T.Compose([T.Resize(size), T.ToTensor(),
                                    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.open(self.images[i]).convert("RGB")
        mask = Image.open(self.masks[i]).resize(self.size[::-1], Image.NEAREST)
        return self.transform(image), torch.from_numpy(np.array(mask)).long()


def image_iou(pred, target, classes):
    """Per-image IoU, class by class, pixel by pixel: the slow metric people write first."""
    pred, target = pred.tolist(), target.tolist()
    ious = []
    for c in range(classes):
        inter = union = 0
        for row_p, row_t in zip(pred, target):
            for p, t in zip(row_p, row_t):
                a, b = p == c, t == c
                inter += a and b
                union += a or b
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious) if ious else 0.0


def validate(model, loader, classes, repeats, device):
    model.eval()
    scores = []
    with torch.no_grad():
        for images, masks in loader:
            preds = model(images.to(device)).argmax(1).cpu()
            for _ in range(repeats):
                for p, m in zip(preds, masks):
                    scores.append(image_iou(p, m, classes))
    model.train()
    return sum(scores) / len(scores)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--metric-repeats", type=int, default=1, help="how many times the metric is computed")
    ap.add_argument("--save-mb", type=int, default=0, help="extra megabytes of state saved with the checkpoint")
    ap.add_argument("--out", default="checkpoints")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--log", default=None, help="also append the epoch timers to this file")
    args = ap.parse_args()
    epoch_clock.LOG = args.log

    torch.manual_seed(0)
    classes = 12
    device = torch.device(args.device)
    model = smp.Unet("resnet18", encoder_weights=None, classes=classes).to(device)
    size = (args.size, args.size)
    train = DataLoader(CamVidDataset(args.data, "train", size), batch_size=2, shuffle=True,
                       num_workers=args.workers, drop_last=True)
    val = DataLoader(CamVidDataset(args.data, "val", size), batch_size=2, num_workers=args.workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    extra = torch.zeros(args.save_mb * 2**18)  # float32: 4 bytes each
    os.makedirs(args.out, exist_ok=True)

    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for images, masks in train:
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), masks)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the script's own clock: training's queued work is training's
        t1 = time.perf_counter()
        miou = validate(model, val, classes, args.metric_repeats, device)
        t2 = time.perf_counter()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "extra": extra},
                   os.path.join(args.out, "last.pt"))
        t3 = time.perf_counter()
        epoch_clock.say(f"epoch {epoch} time {t3 - t0:.4f} train {t1 - t0:.4f} val {t2 - t1:.4f} save {t3 - t2:.4f} "
            f"miou {miou:.4f}")


if __name__ == "__main__":
    main()

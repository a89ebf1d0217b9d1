"""A user's own training script, written the way the CamVid road-segmentation tutorials write it: a Dataset
class over the CamVid folder layout, torchvision transforms, a plain loop that prints `loss.item()` every step.

benchbench's attach tests run it unmodified; its flags only make the failure cases a user hits
(a crash at a step, gradient accumulation, a loop that never calls optimizer.step()).
"""

import argparse
import glob
import os

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
        self.transform = T.Compose([
            T.Resize(size),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.open(self.images[i]).convert("RGB")
        mask = Image.open(self.masks[i]).resize(self.size[::-1], Image.NEAREST)
        return self.transform(image), torch.from_numpy(np.array(mask)).long()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--accum", type=int, default=1, help="backward passes per optimizer step")
    ap.add_argument("--crash-at", type=int, default=None)
    ap.add_argument("--forget-step", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=12)
    loader = DataLoader(CamVidDataset(args.data, "train", (args.size, args.size)), batch_size=args.batch_size,
                        shuffle=True, num_workers=args.workers, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()

    step = 0
    for epoch in range(args.epochs):
        model.train()
        for i, (images, masks) in enumerate(loader):
            outputs = model(images)
            loss = criterion(outputs, masks) / args.accum
            loss.backward()
            if (i + 1) % args.accum == 0 and not args.forget_step:
                if args.crash_at is not None and step == args.crash_at:
                    raise RuntimeError(f"out of memory at step {step}")
                optimizer.step()
                optimizer.zero_grad()
                step += 1
            print(f"epoch {epoch} iter {i} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()

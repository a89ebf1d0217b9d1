"""A user's own training script, written the way the CamVid road-segmentation tutorials write it: a Dataset
class over the CamVid folder layout, torchvision transforms, a plain loop that prints `loss.item()` every step.

benchbench's attach tests run it unmodified; its flags only make the failure cases a user hits
(a crash at a step, gradient accumulation, a loop that never calls optimizer.step()).
"""

import argparse
import glob
import os
import time

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
    ap.add_argument("--exit-at", type=int, default=None, help="os._exit(0) at this step (no atexit, nothing flushed)")
    ap.add_argument("--hang-at", type=int, default=None, help="hang at this step (a deadlock, a stuck read)")
    ap.add_argument("--forget-step", action="store_true")
    ap.add_argument("--scaler-inf-at", type=int, default=None, help="with a GradScaler: an inf loss at this step")
    ap.add_argument("--speed-from", type=int, default=None, help="print steps/s measured from this step on")
    ap.add_argument("--speed-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pin-memory", action="store_true")
    ap.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none")
    args = ap.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=12).to(device)
    loader = DataLoader(CamVidDataset(args.data, "train", (args.size, args.size)), batch_size=args.batch_size,
                        shuffle=True, num_workers=args.workers, drop_last=True, pin_memory=args.pin_memory)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    scaler = None
    if args.scaler_inf_at is not None:
        scaler = torch.amp.GradScaler(device.type, init_scale=2.0**8)
    elif args.amp == "fp16":
        scaler = torch.amp.GradScaler(device.type)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.amp)

    step = 0
    t_speed = None
    for epoch in range(args.epochs):
        model.train()
        for i, (images, masks) in enumerate(loader):
            images = images.to(device, non_blocking=args.pin_memory)
            masks = masks.to(device, non_blocking=args.pin_memory)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                outputs = model(images)
                loss = criterion(outputs, masks) / args.accum
            if scaler is not None:
                bad = step == args.scaler_inf_at
                scaler.scale(loss * float("inf") if bad else loss).backward()
                scaler.step(optimizer)  # skips optimizer.step() when the gradients are not finite
                scaler.update()
                optimizer.zero_grad()
                step += 1
            else:
                loss.backward()
            if scaler is None and (i + 1) % args.accum == 0 and not args.forget_step:
                if args.crash_at is not None and step == args.crash_at:
                    raise RuntimeError(f"out of memory at step {step}")
                optimizer.step()
                optimizer.zero_grad()
                step += 1
            print(f"epoch {epoch} iter {i} loss {loss.item():.4f}", flush=True)
            if args.exit_at is not None and step == args.exit_at:
                os._exit(0)
            if args.hang_at is not None and step == args.hang_at:
                time.sleep(3600)
            if args.speed_from is not None:
                if step == args.speed_from and t_speed is None:
                    t_speed = time.perf_counter()
                elif t_speed is not None and step == args.speed_from + args.speed_steps:
                    print(f"speed: {args.speed_steps / (time.perf_counter() - t_speed):.3f} steps/s", flush=True)
                    return


if __name__ == "__main__":
    main()

"""A user's script that trains what one benchbench suite cell trains (SMP Unet resnet18, 3 classes, 64 px,
batch 4, AdamW lr 1e-3, cross-entropy, batches already in memory), written as a plain loop: the same cell two
ways, for `benchmarks/attach_vs_run.py` and the attach tests."""

import argparse

import segmentation_models_pytorch as smp
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--print-loss", action="store_true", help="print loss.item() every step (a host sync on a GPU)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=3).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(args.batch_size, 3, args.size, args.size, device=args.device)
    masks = torch.randint(0, 3, (args.batch_size, args.size, args.size), device=args.device)
    model.train()
    for _ in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), masks)
        loss.backward()
        optimizer.step()
        if args.print_loss:
            print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()

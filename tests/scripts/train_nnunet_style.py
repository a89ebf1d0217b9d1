"""A training loop shaped as nnU-Net v2's (`nnUNetTrainer.run_training` / `train_step`), at tiny size, without
nnU-Net itself (its network package pins an older timm): the network is `PlainConvUNet`'s structure — a decoder
that keeps a second reference to the encoder (`self.decoder.encoder is self.encoder`), deep supervision outputs —
and the batches come from a background augmenter that yields `{"data", "target"}` dicts, not from a DataLoader.
The plans' batch is 2; SGD with Nesterov momentum, lr 0.01, poly schedule, gradient clipping at 12, as nnU-Net."""

import argparse
import queue
import threading

import numpy as np
import torch
from torch import nn


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1), nn.InstanceNorm2d(cout, affine=True),
                         nn.LeakyReLU(0.01, inplace=True))


class PlainConvEncoder(nn.Module):
    def __init__(self, channels: list[int], in_ch: int) -> None:
        super().__init__()
        stages, c = [], in_ch
        for i, out in enumerate(channels):
            stages.append(nn.Sequential(ConvBlock(c, out, 1 if i == 0 else 2), ConvBlock(out, out)))
            c = out
        self.stages = nn.Sequential(*stages)
        self.output_channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for s in self.stages:
            x = s(x)
            skips.append(x)
        return skips


class UNetDecoder(nn.Module):
    def __init__(self, encoder: PlainConvEncoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder  # as dynamic_network_architectures' UNetDecoder: a second path to the encoder
        self.num_classes = num_classes
        ch = encoder.output_channels
        self.transpconvs = nn.ModuleList(nn.ConvTranspose2d(ch[-s], ch[-(s + 1)], 2, 2) for s in range(1, len(ch)))
        self.stages = nn.ModuleList(ConvBlock(2 * ch[-(s + 1)], ch[-(s + 1)]) for s in range(1, len(ch)))
        self.seg_layers = nn.ModuleList(nn.Conv2d(ch[-(s + 1)], num_classes, 1) for s in range(1, len(ch)))

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        x, outs = skips[-1], []
        for i, (up, stage, seg) in enumerate(zip(self.transpconvs, self.stages, self.seg_layers)):
            x = stage(torch.cat((up(x), skips[-(i + 2)]), 1))
            outs.append(seg(x))
        return outs[::-1]  # deep supervision: full resolution first


class PlainConvUNet(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, channels: list[int]) -> None:
        super().__init__()
        self.encoder = PlainConvEncoder(channels, in_ch)
        self.decoder = UNetDecoder(self.encoder, num_classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))


class Augmenter:
    """nnU-Net's `NonDetMultiThreadedAugmenter` in miniature: a thread fills a queue with batches as dicts."""

    def __init__(self, batch_size: int, patch: int, classes: int, seed: int = 0) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=4)
        self.bs, self.patch, self.classes = batch_size, patch, classes
        self.rng = np.random.default_rng(seed)
        threading.Thread(target=self._fill, daemon=True).start()

    def _fill(self) -> None:
        while True:
            data = self.rng.standard_normal((self.bs, 1, self.patch, self.patch)).astype(np.float32)
            target = self.rng.integers(0, self.classes, (self.bs, 1, self.patch, self.patch)).astype(np.float32)
            self.q.put({"data": data, "target": target, "keys": [f"case_{i}" for i in range(self.bs)]})

    def __next__(self) -> dict:
        return self.q.get()


class Trainer:
    def __init__(self, epochs: int, iters: int, batch_size: int, patch: int, device: str) -> None:
        self.num_epochs, self.num_iterations_per_epoch, self.device = epochs, iters, torch.device(device)
        self.network = PlainConvUNet(1, 3, [8, 16, 32, 32]).to(self.device)
        self.initial_lr = 1e-2
        self.optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=3e-5,
                                         momentum=0.99, nesterov=True)
        self.dataloader_train = Augmenter(batch_size, patch, 3)

    def loss(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for w, out in zip((0.53, 0.27, 0.13), outputs):
            t = nn.functional.interpolate(target, size=out.shape[2:], mode="nearest")[:, 0].long()
            total = total + w * nn.functional.cross_entropy(out, t)
        return total

    def train_step(self, batch: dict) -> dict:
        data = torch.from_numpy(batch["data"]).to(self.device, non_blocking=True)
        target = torch.from_numpy(batch["target"]).to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        output = self.network(data)
        loss = self.loss(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def run_training(self) -> None:
        for epoch in range(self.num_epochs):
            self.network.train()
            for g in self.optimizer.param_groups:  # PolyLRScheduler
                g["lr"] = self.initial_lr * (1 - epoch / self.num_epochs) ** 0.9
            for _ in range(self.num_iterations_per_epoch):
                self.train_step(next(self.dataloader_train))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--iters", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    Trainer(args.epochs, args.iters, args.batch_size, args.patch, args.device).run_training()


if __name__ == "__main__":
    main()

"""A user's DDP training script, as the PyTorch DDP tutorial writes it, launched by
`torchrun --nproc-per-node 2 train_ddp.py --data …` (or `srun --ntasks 2 python train_ddp.py …` with
MASTER_ADDR/MASTER_PORT exported, as a SLURM batch script does): the process group from the launcher's
environment (gloo on a CPU), a DistributedSampler, the model wrapped in DistributedDataParallel, a plain loop.

benchbench's rank tests run it unmodified; its flags make what users of DDP meet: one rank's data slower
(`--slow-rank`: that rank's images come from a slow disk), a head whose output the loss never uses with
`find_unused_parameters=True`, a rank that raises at a step.
"""

import argparse
import glob
import os
import time

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.distributed as dist
from PIL import Image
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class CamVidDataset(Dataset):
    def __init__(self, root, size=32, delay_s=0.0):
        self.images = sorted(glob.glob(os.path.join(root, "train", "*.png")))
        self.masks = [os.path.join(root, "trainannot", os.path.basename(p)) for p in self.images]
        self.size = size
        self.delay_s = delay_s

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.delay_s:
            time.sleep(self.delay_s)  # this rank's copy of the data set sits on a slow network disk
        image = Image.open(self.images[i]).convert("RGB").resize((self.size, self.size))
        mask = Image.open(self.masks[i]).resize((self.size, self.size), Image.NEAREST)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return x, torch.from_numpy(np.array(mask)).long()


class WithAuxHead(torch.nn.Module):
    """A model with an auxiliary head the loss does not use (kept from an experiment): DDP needs
    find_unused_parameters=True for it, and pays a traversal of the graph every step."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.aux = torch.nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, x):
        return self.net(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--slow-rank", type=int, default=None)
    ap.add_argument("--slow-s", type=float, default=0.05, help="seconds an image on the slow rank")
    ap.add_argument("--aux-head", action="store_true", help="an unused head, find_unused_parameters=True")
    ap.add_argument("--find-unused", action="store_true", help="find_unused_parameters=True, 'just in case'")
    ap.add_argument("--crash-rank", type=int, default=None)
    ap.add_argument("--crash-at", type=int, default=3)
    ap.add_argument("--speed-from", type=int, default=None, help="rank 0 prints steps/s from this step on")
    ap.add_argument("--speed-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cuda: each rank on cuda:LOCAL_RANK")
    ap.add_argument("--backend", default=None, help="nccl on CUDA, gloo on a CPU unless given")
    args = ap.parse_args()

    backend = args.backend or ("nccl" if args.device == "cuda" else "gloo")
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:  # srun: the tasks are the ranks
        dist.init_process_group(backend, rank=int(os.environ["SLURM_PROCID"]),
                                world_size=int(os.environ["SLURM_NTASKS"]))
    else:  # torchrun: rank, world size and the rendezvous from its environment
        dist.init_process_group(backend)
    rank = dist.get_rank()
    device = torch.device("cpu")
    if args.device == "cuda":  # one GPU a rank; ranks sharing one GPU need gloo (NCCL refuses a duplicate GPU)
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    net = smp.Unet("resnet18", encoder_weights=None, classes=12).to(device)
    if args.aux_head:
        model = DDP(WithAuxHead(net).to(device), find_unused_parameters=True)
    else:
        model = DDP(net, find_unused_parameters=args.find_unused)
    data = CamVidDataset(args.data, args.size, args.slow_s if rank == args.slow_rank else 0.0)
    sampler = DistributedSampler(data, shuffle=True)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                        drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()

    step = 0
    t_speed = None
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for images, masks in loader:
            if rank == args.crash_rank and step == args.crash_at:
                raise RuntimeError(f"rank {rank}: bad batch at step {step}")
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = criterion(model(images), masks)
            loss.backward()
            optimizer.step()
            if rank == 0:
                print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
            step += 1
            if args.speed_from is not None and step == args.speed_from:
                t_speed = time.perf_counter()
            elif t_speed is not None and step == args.speed_from + args.speed_steps:  # every rank stops here
                if rank == 0:
                    print(f"speed: {args.speed_steps / (time.perf_counter() - t_speed):.3f} steps/s", flush=True)
                dist.destroy_process_group()
                return
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

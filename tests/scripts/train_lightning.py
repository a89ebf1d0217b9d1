"""A user's PyTorch Lightning training script: a LightningModule around an SMP Unet, an albumentations
pipeline in the user's own Dataset (OpenCV reads, image and mask augmented together), DataLoader workers,
a validation loader, and `Trainer.fit` — written as Lightning's docs and the SMP examples write it."""

import argparse
import glob
import os
import time

import albumentations as A
import cv2
import epoch_clock  # the user's own timer log, beside the script
import pytorch_lightning as pl
import segmentation_models_pytorch as smp
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset


class RoadDataset(Dataset):
    def __init__(self, root, split, augmentation):
        self.images = sorted(glob.glob(os.path.join(root, split, "*.png")))
        self.masks = [os.path.join(root, split + "annot", os.path.basename(p)) for p in self.images]
        self.augmentation = augmentation

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = cv2.cvtColor(cv2.imread(self.images[i]), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(self.masks[i], cv2.IMREAD_GRAYSCALE)
        sample = self.augmentation(image=image, mask=mask)
        return sample["image"], sample["mask"].long()


class SegModel(pl.LightningModule):
    def __init__(self, lr=1e-3):
        super().__init__()
        self.model = smp.Unet("resnet18", encoder_weights=None, classes=12)
        self.loss_fn = smp.losses.DiceLoss("multiclass")

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        loss = self.loss_fn(self(images), masks)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, masks = batch
        self.log("val_loss", self.loss_fn(self(images), masks))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Timers(pl.Callback):
    """The user's own clock: validation time per training epoch, printed at each epoch's end (`epoch 3 val 0.412`)."""

    def __init__(self):
        self.val = 0.0

    def on_validation_start(self, trainer, pl_module):
        self.t_val = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.val += time.perf_counter() - self.t_val

    def on_train_epoch_end(self, trainer, pl_module):
        epoch_clock.say(f"epoch {trainer.current_epoch} val {self.val:.4f}")
        self.val = 0.0


class TimedCheckpoint(pl.callbacks.ModelCheckpoint):
    """ModelCheckpoint, its writes timed (the user's own subclass): `epoch 3 save 0.118`."""

    def _save_checkpoint(self, trainer, filepath):
        t0 = time.perf_counter()
        super()._save_checkpoint(trainer, filepath)
        epoch_clock.say(f"epoch {trainer.current_epoch} save {time.perf_counter() - t0:.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--val-check-interval", type=float, default=1.0)
    ap.add_argument("--checkpoint-dir", default=None, help="save a checkpoint every epoch (ModelCheckpoint) here")
    ap.add_argument("--log", default=None, help="also append the epoch timers to this file")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--strategy", default="auto", help="ddp: under torchrun, one process a device")
    args = ap.parse_args()
    epoch_clock.LOG = args.log
    train_aug = A.Compose([A.RandomCrop(args.size, args.size), A.HorizontalFlip(p=0.5),
                           A.RandomBrightnessContrast(p=0.5), A.Normalize(), ToTensorV2()])
    val_aug = A.Compose([A.CenterCrop(args.size, args.size), A.Normalize(), ToTensorV2()])
    train = DataLoader(RoadDataset(args.data, "train", train_aug), batch_size=2, shuffle=True,
                       num_workers=args.workers, persistent_workers=args.workers > 0)
    val = DataLoader(RoadDataset(args.data, "val", val_aug), batch_size=2, num_workers=args.workers)
    timers = Timers()
    callbacks = [timers]
    if args.checkpoint_dir:
        callbacks.append(TimedCheckpoint(dirpath=args.checkpoint_dir, save_top_k=-1, every_n_epochs=1))
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=args.devices, strategy=args.strategy,
                         logger=False,
                         enable_checkpointing=bool(args.checkpoint_dir), callbacks=callbacks,
                         val_check_interval=args.val_check_interval,
                         enable_model_summary=False, enable_progress_bar=False)
    trainer.fit(SegModel(), train, val)


if __name__ == "__main__":
    main()

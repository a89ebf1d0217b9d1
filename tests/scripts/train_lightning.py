"""A user's PyTorch Lightning training script: a LightningModule around an SMP Unet, an albumentations
pipeline in the user's own Dataset (OpenCV reads, image and mask augmented together), DataLoader workers,
a validation loader, and `Trainer.fit` — written as Lightning's docs and the SMP examples write it."""

import argparse
import glob
import os

import albumentations as A
import cv2
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    train_aug = A.Compose([A.RandomCrop(args.size, args.size), A.HorizontalFlip(p=0.5),
                           A.RandomBrightnessContrast(p=0.5), A.Normalize(), ToTensorV2()])
    val_aug = A.Compose([A.CenterCrop(args.size, args.size), A.Normalize(), ToTensorV2()])
    train = DataLoader(RoadDataset(args.data, "train", train_aug), batch_size=2, shuffle=True,
                       num_workers=args.workers, persistent_workers=args.workers > 0)
    val = DataLoader(RoadDataset(args.data, "val", val_aug), batch_size=2, num_workers=args.workers)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=False)
    trainer.fit(SegModel(), train, val)


if __name__ == "__main__":
    main()

"""User code as users write it: a CamVid `Dataset` class reading image files with OpenCV or PIL, augmented with
albumentations or torchvision (v1 and v2), a loss and an optimizer of their own — plugged into suites by name
(`data: {dataset: user_pipeline:camvid_albumentations, root: ...}`, `loss: user_pipeline:make_loss`).

Nothing here knows benchbench.
"""

from __future__ import annotations

import os
import time

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, IterableDataset


class CamVidDataset(Dataset):
    """The CamVid tutorial's dataset: images/ + masks/ of the same names, read with OpenCV."""

    def __init__(self, images_dir: str, masks_dir: str, augmentation=None) -> None:
        self.ids = sorted(os.listdir(images_dir))
        self.images_fps = [os.path.join(images_dir, i) for i in self.ids]
        self.masks_fps = [os.path.join(masks_dir, i) for i in self.ids]
        self.augmentation = augmentation

    def __getitem__(self, i):
        image = cv2.imread(self.images_fps[i])
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        mask = cv2.imread(self.masks_fps[i], 0)
        if self.augmentation:
            sample = self.augmentation(image=image, mask=mask)
            image, mask = sample["image"], sample["mask"]
        return image, mask

    def __len__(self) -> int:
        return len(self.ids)


class SlowBlur(A.ImageOnlyTransform):
    """A deliberately expensive augmentation: a large median blur, applied several times."""

    def __init__(self, rounds: int = 6, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.rounds = rounds

    def apply(self, img, **params):
        for _ in range(self.rounds):
            img = cv2.medianBlur(img, 15)
        return img


def camvid_albumentations(root: str, resolution, split: str = "train", slow: bool = False, seed: int | None = None):
    h, w = resolution
    steps = [A.Resize(h, w), A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)]
    if slow:
        steps.append(SlowBlur())
    steps += [A.Normalize(), ToTensorV2()]
    return CamVidDataset(os.path.join(root, split), os.path.join(root, f"{split}annot"), A.Compose(steps, seed=seed))


class DictCamVid(CamVidDataset):
    """The same data set returning a mapping, as many codebases do."""

    def __getitem__(self, i):
        image, mask = super().__getitem__(i)
        return {"pixels": image, "labels": mask, "name": self.ids[i]}


def camvid_dict(root: str, resolution, split: str = "train"):
    h, w = resolution
    aug = A.Compose([A.Resize(h, w), A.Normalize(), ToTensorV2()])
    return DictCamVid(os.path.join(root, split), os.path.join(root, f"{split}annot"), aug)


class TorchvisionCamVid(Dataset):
    """PIL + torchvision v1: the image through transforms.Compose, the mask resized to match."""

    def __init__(self, root: str, split: str, resolution) -> None:
        from torchvision import transforms

        self.dir = os.path.join(root, split)
        self.mask_dir = os.path.join(root, f"{split}annot")
        self.names = sorted(os.listdir(self.dir))
        self.size = tuple(resolution)
        self.transform = transforms.Compose([
            transforms.Resize(self.size),
            transforms.ColorJitter(0.2, 0.2),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        img = Image.open(os.path.join(self.dir, self.names[i])).convert("RGB")
        mask = Image.open(os.path.join(self.mask_dir, self.names[i])).resize(self.size[::-1], Image.NEAREST)
        return self.transform(img), torch.from_numpy(np.array(mask)).long()


def camvid_torchvision(root: str, resolution, split: str = "train"):
    return TorchvisionCamVid(root, split, resolution)


class V2CamVid(Dataset):
    """torchvision.transforms.v2 on tv_tensors: image and mask transformed together."""

    def __init__(self, root: str, split: str, resolution) -> None:
        from torchvision.transforms import v2

        self.dir, self.mask_dir = os.path.join(root, split), os.path.join(root, f"{split}annot")
        self.names = sorted(os.listdir(self.dir))
        self.transforms = v2.Compose([
            v2.RandomResizedCrop(tuple(resolution), scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        from torchvision import tv_tensors
        from torchvision.io import decode_image, read_file

        img = decode_image(read_file(os.path.join(self.dir, self.names[i])))
        mask = decode_image(read_file(os.path.join(self.mask_dir, self.names[i])))[0]
        img, mask = self.transforms(tv_tensors.Image(img), tv_tensors.Mask(mask))
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def camvid_v2(root: str, resolution, split: str = "train"):
    return V2CamVid(root, split, resolution)


class Stream(IterableDataset):
    """An iterable data set (a stream of shards, say): its items one after another."""

    def __init__(self, base: Dataset, repeat: int = 1) -> None:
        self.base, self.repeat = base, repeat

    def __iter__(self):
        for _ in range(self.repeat):
            for i in range(len(self.base)):
                yield self.base[i]


def camvid_stream(root: str, resolution, split: str = "train"):
    return Stream(camvid_albumentations(root, resolution, split), repeat=50)


def sleepy(resolution, classes: int, per_item_s: float = 0.01):
    """A data set whose every item costs `per_item_s` of the data set's own code (a known answer)."""

    class Sleepy(Dataset):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, i):
            time.sleep(per_item_s)
            g = torch.Generator().manual_seed(i)
            return torch.randn(3, *resolution, generator=g), torch.randint(0, classes, tuple(resolution), generator=g)

    return Sleepy()


# ---------------------------------------------------------------- broken factories, for the messages


def wrong_size(root: str, resolution):
    return camvid_albumentations(root, (resolution[0] * 2, resolution[1]))


def empty(resolution):
    return Stream(torch.utils.data.TensorDataset(torch.zeros(0)), repeat=0)


def not_a_dataset(resolution):
    return [1, 2, 3]


def raises(resolution):
    raise RuntimeError("the annotation file is missing")


def needs_root(root: str, resolution):
    return camvid_albumentations(root, resolution)


def too_many_classes(root: str, resolution):
    ds = camvid_albumentations(root, resolution)
    ds.augmentation = A.Compose([A.Resize(*resolution), A.Normalize(), ToTensorV2()])
    return ds


def float_mask(root: str, resolution):
    class F(CamVidDataset):
        def __getitem__(self, i):
            image, mask = super().__getitem__(i)
            return image, mask.float()

    base = camvid_albumentations(root, resolution)
    return F(os.path.dirname(base.images_fps[0]), os.path.dirname(base.masks_fps[0]), base.augmentation)


def cast_image(root: str, resolution, dtype: str = "float64"):
    """`np.array(img) / 255.0` (float64), or a half-precision cache (float16): an image dtype a user's own Dataset
    often makes, that the model does not train in."""
    class F(CamVidDataset):
        def __getitem__(self, i):
            image, mask = super().__getitem__(i)
            return image.to(getattr(torch, dtype)), mask

    base = camvid_albumentations(root, resolution)
    return F(os.path.dirname(base.images_fps[0]), os.path.dirname(base.masks_fps[0]), base.augmentation)


# ---------------------------------------------------------------- a loss and an optimizer of the user's own


class DiceCE(nn.Module):
    def __init__(self, classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(ignore_index=ignore_index)
        self.classes, self.ignore = classes, ignore_index

    def forward(self, logits, target):
        valid = target != self.ignore
        onehot = nn.functional.one_hot(target.clamp(0, self.classes - 1), self.classes).permute(0, 3, 1, 2)
        prob = logits.softmax(1) * valid[:, None]
        dice = 1 - (2 * (prob * onehot).sum() + 1) / (prob.sum() + (onehot * valid[:, None]).sum() + 1)
        return self.ce(logits, target) + dice


def make_loss(classes: int, ignore_index: int):
    return DiceCE(classes, ignore_index)


def make_optimizer(model: nn.Module, lr: float):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": rest}], lr=lr, momentum=0.9)

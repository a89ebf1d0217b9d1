"""benchbench's own input pipelines: a generated on-disk data set and real folders, decoded and augmented by
`SegmentationFolder` (the user's own data set is `workload.userdata`; the stream of batches `workload.source`).

`synthetic` is the control (no input cost at all); `synthetic-disk` and
`folder` go through a real DataLoader that decodes PNGs, augments and collates,
so the input pipeline's share of a step can be measured rather than guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchbench.errors import BenchbenchError
from benchbench.policy import cache_dir

IGNORE_INDEX = 255
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SYNTH_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXPLAIN_STEPS = 16  # batches the explanation passes draw after the timed steps (profile, memory, FLOPs)


# ---------------------------------------------------------------- synthetic-disk


def _draw_sample(rng: np.random.Generator, h: int, w: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A CamVid-like scene: horizontal bands (sky/road) plus random boxes, with texture.

    Real PNGs of natural-ish content compress and decode like real data sets;
    pure noise would make decoding unrealistically slow (incompressible).
    """
    mask = np.zeros((h, w), dtype=np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.5))
    mask[:horizon] = 0 % classes
    mask[horizon:] = 1 % classes
    for _ in range(int(rng.integers(4, 12))):
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        bh, bw = int(rng.integers(4, max(5, h // 3))), int(rng.integers(4, max(5, w // 3)))
        mask[y0 : y0 + bh, x0 : x0 + bw] = int(rng.integers(0, classes))
    palette = rng.integers(0, 256, size=(max(classes, 2), 3), dtype=np.int64)
    yy = np.linspace(0, 1, h)[:, None, None]
    img = palette[mask].astype(np.float64) * (0.7 + 0.3 * yy)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def ensure_synthetic_disk(spec: dict[str, Any], classes: int) -> Path:
    """Generate the data set once into the cache; concurrent cells never see half of it."""
    h, w = spec.get("image_size", [360, 480])
    count = int(spec.get("count", 64))
    key = hashlib.sha1(json.dumps([SYNTH_VERSION, h, w, count, classes]).encode()).hexdigest()[:10]
    root = cache_dir() / f"synthetic-disk-{h}x{w}-n{count}-c{classes}-{key}"
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        (tmp / "train").mkdir()
        (tmp / "trainannot").mkdir()
        rng = np.random.default_rng(1234)
        for i in range(count):
            img, mask = _draw_sample(rng, h, w, classes)
            Image.fromarray(img).save(tmp / "train" / f"synth_{i:05d}.png")
            Image.fromarray(mask, mode="L").save(tmp / "trainannot" / f"synth_{i:05d}.png")
        (tmp / ".complete").write_text("ok\n")
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / ".complete").exists():  # lost a race to a half-written dir: replace it
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# ---------------------------------------------------------------- folders


def _images_in(d: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXTS and p.is_file()}


def find_pairs(root: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    """Image/mask pairs from a CamVid layout (split/ + splitannot/) or images/ + masks/."""
    root = Path(root)
    if not root.is_dir():
        raise BenchbenchError(f"data folder not found: {root} (data: {{folder: PATH}} must name an existing directory)")
    layouts = [
        (root / split, root / f"{split}annot"),
        (root / split / "images", root / split / "masks"),
        (root / "images", root / "masks"),
    ]
    for img_dir, mask_dir in layouts:
        if img_dir.is_dir() and mask_dir.is_dir():
            images, masks = _images_in(img_dir), _images_in(mask_dir)
            pairs = [(images[k], masks[k]) for k in sorted(images) if k in masks]
            if not pairs:
                raise BenchbenchError(
                    f"data folder {root}: no image in {img_dir.name}/ has a mask of the same name in {mask_dir.name}/"
                )
            return pairs
    raise BenchbenchError(
        f"data folder {root} has neither the CamVid layout ({split}/ and {split}annot/) "
        "nor images/ and masks/ subfolders"
    )


class SegmentationFolder(Dataset):
    """Decode, jointly augment (random resized crop + flip) and normalise image/mask pairs."""

    def __init__(self, pairs: list[tuple[Path, Path]], resolution: tuple[int, int], classes: int,
                 length: int | None = None, cache: bool = False) -> None:
        from torchvision.transforms import v2

        self.pairs = pairs
        self.length = max(length or 0, len(pairs))  # an epoch may revisit images (see Source)
        # cache: ram decodes every pair once, here, before DataLoader workers fork (they share it copy-on-write)
        self.classes = classes
        self.decoded = [self.decode(i) for i in range(len(pairs))] if cache else None
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size=tuple(resolution), scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),  # converts the image only, never the mask
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return self.length

    def decode(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        img_path, mask_path = self.pairs[idx % len(self.pairs)]
        with Image.open(img_path) as im:
            img = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        with Image.open(mask_path) as m:
            arr = np.asarray(m if m.mode in ("L", "P", "I", "I;16") else m.convert("L")).astype(np.int64)
        arr[arr >= self.classes] = IGNORE_INDEX
        return img, torch.from_numpy(arr)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        img, mask = self.decoded[idx % len(self.pairs)] if self.decoded is not None else self.decode(idx)
        image, mask = self.transform(tv_tensors.Image(img), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


# ---------------------------------------------------------------- sources


def data_root(params: dict[str, Any]) -> Path | None:
    spec = params["data"]
    if spec["kind"] == "synthetic":
        return None
    if spec["kind"] == "synthetic-disk":
        return ensure_synthetic_disk(spec, params["classes"])
    return Path(spec["path"]).expanduser()


def check_data(params: dict[str, Any]) -> None:
    """Preflight: a folder data set must exist and have pairs (synthetic-disk is made later)."""
    spec = params["data"]
    if spec["kind"] == "folder":
        pairs = find_pairs(Path(spec["path"]).expanduser(), spec.get("split", "train"))
        if len(pairs) < params["batch_size"]:
            raise BenchbenchError(
                f"data folder {spec['path']} has {len(pairs)} samples, fewer than batch_size={params['batch_size']}"
            )

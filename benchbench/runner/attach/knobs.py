"""advise's outside knobs in the script's process: DataLoader arguments and torch settings applied as its
objects are made, before its first line runs (`install.install` calls them); the validation loader's, as its
iterator is made (`val_loader_settings`)."""

from __future__ import annotations

from typing import Any


def _torch_settings(t: dict[str, Any]) -> None:
    """advise's outside knobs that are torch's own settings: set before the script's first line (a script
    that sets them itself still wins, as it would without benchbench)."""
    import torch

    if t.get("cudnn_benchmark"):
        torch.backends.cudnn.benchmark = True
    if t.get("tf32"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if t.get("fused_optimizer"):
        for name in ("Adam", "AdamW", "SGD"):
            cls = getattr(torch.optim, name)
            orig = cls.__init__

            def init(self: Any, params: Any, *a: Any, _orig: Any = orig, **k: Any) -> None:
                if "fused" not in k and "foreach" not in k:
                    k["fused"] = True
                _orig(self, params, *a, **k)

            cls.__init__ = init
    if t.get("ddp"):
        _ddp_settings(t["ddp"])


def _ddp_settings(overrides: dict[str, Any]) -> None:
    """advise's DDP knobs (`bucket_cap_mb`, `gradient_as_bucket_view`, `static_graph`,
    `find_unused_parameters`): given to every DistributedDataParallel the script builds, in each rank."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    orig = DDP.__init__

    def init(self: Any, module: Any, *a: Any, **k: Any) -> None:
        orig(self, module, *a, **{**k, **overrides})

    DDP.__init__ = init


def _override(args: tuple[Any, ...], kwargs: dict[str, Any], overrides: dict[str, Any],
              init: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The DataLoader's arguments with advise's outside knobs applied (positional ones named first). `init` is
    torch's own `DataLoader.__init__`: its signature names the positions (`DataLoader(ds, 2, True, None, None,
    1)`), never the patched one's `(*a, **k)`."""
    import inspect

    names = [n for n in inspect.signature(init).parameters if n not in ("self", "dataset")]
    k = dict(kwargs)
    for name, v in zip(names, args[1:], strict=False):
        k.setdefault(name, v)
    k.update(overrides)
    if not k.get("num_workers"):
        k.pop("prefetch_factor", None)
        k["persistent_workers"] = False
    return args[:1], k


#: the validation loader's outside knobs (`advise --attach --epochs`): DataLoader attributes set on a loader that
#: is not the training one, as its iterator is made
VAL_LOADER_KNOBS = ("num_workers", "pin_memory", "persistent_workers")


def val_loader_settings(loader: Any, overrides: dict[str, Any]) -> None:
    """A validation loader gets advise's settings before its iterator is made: which loader validates is known
    only once training has stepped (the one whose batches did not feed a step), never at its construction — a
    trainer may build both at one line. `persistent_workers` is a set-once attribute of DataLoader: set past its
    guard, it acts from the next pass, as the user's own `persistent_workers=True` would."""
    for k, v in overrides.items():
        if k not in VAL_LOADER_KNOBS or getattr(loader, k, None) == v:
            continue
        if k == "persistent_workers":
            object.__setattr__(loader, k, bool(v))
        else:
            setattr(loader, k, v)
    if loader.num_workers > 0 and loader.prefetch_factor is None:
        loader.prefetch_factor = 2  # DataLoader's own default where it has workers

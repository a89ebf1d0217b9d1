"""The environment fingerprint: what a number was measured on.

Two results are comparable only on the same hardware and software; the
fingerprint hash covers exactly the fields that change speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

# Fields whose change makes timings incomparable (compare and baselines key on these).
FINGERPRINT_KEYS = ("device", "gpu", "cpu", "threads", "torch", "cuda", "cudnn", "driver")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(cwd: str | None = None) -> str | None:
    here = cwd or str(Path(__file__).resolve().parent)
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, timeout=5, check=False
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=here,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=4)
def environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    import torch

    import benchbench

    env: dict[str, Any] = {
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "smp": _version("segmentation-models-pytorch"),
        "timm": _version("timm"),
        "benchbench": benchbench.__version__,
        "git_commit": git_commit(),
        "cuda": torch.version.cuda if device == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "gpu": None,
        "gpu_memory_bytes": None,
        "driver": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_bytes"] = int(props.total_memory)
        env["driver"] = _gpu_driver()
    env["fingerprint"] = fingerprint(env)
    return env


def fingerprint(env: dict[str, Any]) -> str:
    ident = {k: env.get(k) for k in FINGERPRINT_KEYS}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def env_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in FINGERPRINT_KEYS if a.get(k) != b.get(k)}


def describe(env: dict[str, Any]) -> str:
    hw = env.get("gpu") or env.get("cpu")
    return f"{hw}, {env.get('threads')} threads, torch {env.get('torch')}" + (
        f", CUDA {env['cuda']}" if env.get("cuda") else ""
    )


def main_json() -> str:
    return json.dumps(environment(), indent=2, sort_keys=True)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(main_json() + "\n")

"""`advise --attach --vary`: the command's own arguments and environment as knobs, each value measured alone A/B
against the unmodified command — the YOLOv5-seg document's "change one variable at a time", on the user's command.

`--vary 'batch=8,16'` finds `batch=V` in the command (`yolo ... batch=16`); `--vary '--workers=2,8'` finds
`--workers V` or `--workers=V` (argparse's two spellings); `--vary 'env:nnUNet_n_proc_DA=4,8'` sets an environment
variable. An argument the command does not have is appended in the spelling given. A value equal to the command's
own is no variant and is skipped (said, never silently).

A variant that changes what is trained — the batch the model receives, the image size, AMP, the model — is a
**training change**: it is judged per image (a batch of 16 takes longer than one of 8 and may still be faster per
image) and its losses are not held to the base's (a different batch is a different optimisation). Whether it is
one is read from what the runs observed (their records' batch, resolution, AMP, model), not from the argument's
name; a variant that changed none of them is judged on the step, with the numerics checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchbench.errors import BenchbenchError, short_repr
from benchbench.suite.command import ENV_NAME

#: what a run observed that, when a variant changes it, makes the variant a change of what is trained
TRAINED = ("batch_size", "resolution", "amp", "arch", "decoder_channels", "classes", "in_channels", "depth")


@dataclass(frozen=True)
class Vary:
    name: str  # `batch`, `--workers`, `-b`, or an environment variable's name
    values: tuple[str, ...]
    env: bool = False

    @property
    def label(self) -> str:
        return f"env:{self.name}" if self.env else self.name


def parse_vary(spec: str) -> Vary:
    """`NAME=V1,V2`, `--flag=V1,V2`, `env:VAR=V1,V2`; a malformed one is refused before anything runs."""
    env = spec.startswith("env:")
    body = spec[4:] if env else spec
    name, sep, raw = body.partition("=")
    name = name.strip()
    values = tuple(v.strip() for v in raw.split(",")) if sep else ()
    if not name or not values or any(not v for v in values):
        raise BenchbenchError(f"--vary {short_repr(spec, 60)}: give NAME=V1,V2 (an argument `batch=8,16`, a flag "
                              "`--workers=2,8`, or an environment variable `env:OMP_NUM_THREADS=1,2`)")
    if env and not ENV_NAME.fullmatch(name):
        raise BenchbenchError(f"--vary {short_repr(spec, 60)}: {short_repr(name)} is no environment variable name")
    if not env and (" " in name or "=" in name):
        raise BenchbenchError(f"--vary {short_repr(spec, 60)}: {short_repr(name)} is no argument name")
    return Vary(name, tuple(dict.fromkeys(values)), env)


def _find(command: list[str], name: str) -> tuple[int, bool] | None:
    """Where the command gives `name`: the index of the token holding its value, and whether that token is
    `NAME=V` (else the value follows the flag); None where it does not."""
    for i, tok in enumerate(command):
        if tok.startswith(name + "="):
            return i, True
        if tok == name and name.startswith("-") and i + 1 < len(command):
            return i + 1, False
    return None


def current(command: list[str], name: str) -> tuple[int, str] | None:
    """Where the command gives `name` and its value: (index of the value, value), or None."""
    at = _find(command, name)
    if at is None:
        return None
    i, joined = at
    return i, command[i][len(name) + 1:] if joined else command[i]


def with_value(command: list[str], name: str, value: str) -> list[str]:
    """The command with `name` set to `value`: replaced where it is, appended where it is not."""
    at = _find(command, name)
    if at is None:
        return [*command] + ([name, value] if name.startswith("-") else [f"{name}={value}"])
    out = list(command)
    i, joined = at
    out[i] = f"{name}={value}" if joined else value
    return out


def variants(command: list[str], env: dict[str, str], v: Vary) -> tuple[list[dict[str, Any]], list[str]]:
    """Each value of `v` as a variant of the base ({"to", "command", "env"}), and what was skipped and why."""
    out, skipped = [], []
    base = env.get(v.name) if v.env else (current(command, v.name) or (None, None))[1]
    for value in v.values:
        if base is not None and value == base:
            skipped.append(f"{v.label}={value}: the command's own value (the base measures it)")
            continue
        out.append({"to": value, "command": list(command) if v.env else with_value(command, v.name, value),
                    "env": {v.name: value} if v.env else {}})
    return out, skipped


def trained_change(base: Any, runs: list[Any]) -> dict[str, tuple[Any, Any]]:
    """What the variant's runs trained differently from the base's, as observed: {setting: (base, variant)}."""
    run = next((r for r in runs if r.ok), None)
    if run is None:
        return {}
    return {k: (base.params.get(k), run.params.get(k)) for k in TRAINED
            if base.params.get(k) != run.params.get(k) and run.params.get(k) is not None}

"""Does the faster cell still train the same? Loss trajectories against the base's own seed-to-seed spread.

Base and candidate train from the same seed on the same batches; each record keeps every step's loss
(`training.losses`). The distance between two trajectories is the mean absolute difference of their log
losses over the steps both ran (scale-free: a loss of 2.0 vs 2.2 weighs like 0.20 vs 0.22).

The yardstick is the base against itself at another seed (`seed + 1`): a knob that moves the loss by less
than changing the seed does is numerically harmless ("unchanged"); one that moves it by more "changes the
numerics"; a non-finite loss, more GradScaler-skipped steps than the base, or a last loss above the first
(the base's went down) "diverges". Knobs that change the model or the optimisation are never called free.
"""

from __future__ import annotations

import math
from typing import Any


def losses(rec: dict[str, Any]) -> list[float]:
    """The trajectory; a non-finite loss was stored as null (JSON has no NaN) and reads as NaN again."""
    return [math.nan if v is None else float(v) for v in (rec.get("training") or {}).get("losses") or []]


def distance(a: list[float], b: list[float]) -> float | None:
    n = min(len(a), len(b))
    pairs = [(x, y) for x, y in zip(a[:n], b[:n]) if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        return None
    return sum(abs(math.log(x) - math.log(y)) for x, y in pairs) / len(pairs)


def skipped(rec: dict[str, Any]) -> int:
    return int(((rec.get("training") or {}).get("grad_scaler") or {}).get("skipped_steps") or 0)


def verdict(base: dict[str, Any], other_seed: dict[str, Any] | None, cand: dict[str, Any], kind: str) -> dict[str, Any]:
    """The numerics verdict of a candidate run against a base run of the same seed."""
    lb, lc = losses(base), losses(cand)
    out: dict[str, Any] = {"distance": distance(lb, lc), "tolerance": distance(lb, losses(other_seed or {})),
                           "steps": min(len(lb), len(lc)), "first_loss": lc[0] if lc else None,
                           "last_loss": lc[-1] if lc else None, "skipped_steps": skipped(cand)}
    bad = [v for v in lc if not math.isfinite(v)]
    if kind != "free":
        out["verdict"] = f"changes the {kind} — check accuracy"
        if bad:
            out["verdict"] = "diverges"
            out["why"] = f"{len(bad)} non-finite loss value(s)"
        return out
    if not lc or not lb:
        out.update(verdict="unknown", why="no loss trajectory recorded")
    elif bad:
        out.update(verdict="diverges", why=f"{len(bad)} of {len(lc)} losses not finite")
    elif skipped(cand) > skipped(base):
        out.update(verdict="diverges", why=f"GradScaler skipped {skipped(cand)} step(s), the base {skipped(base)}")
    elif len(lb) > 1 and lb[-1] < lb[0] and lc[-1] >= lc[0]:
        out.update(verdict="diverges", why=f"loss {lc[0]:.4g} -> {lc[-1]:.4g} did not go down (base "
                                           f"{lb[0]:.4g} -> {lb[-1]:.4g})")
    elif out["tolerance"] is None:
        out.update(verdict="unknown", why="no second-seed trajectory to judge against")
    elif out["distance"] <= out["tolerance"]:
        out.update(verdict="unchanged", why=f"loss moved {out['distance'] * 100:.2g}%, a seed change "
                                            f"{out['tolerance'] * 100:.2g}%")
    else:
        out.update(verdict="changes the numerics", why=f"loss moved {out['distance'] * 100:.2g}%, more than a "
                                                       f"seed change ({out['tolerance'] * 100:.2g}%)")
    return out

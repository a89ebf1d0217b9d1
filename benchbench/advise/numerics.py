"""Does the faster cell still train the same? Loss trajectories against the base's own seed-to-seed spread.

Base and candidate train from the same seed on the same batches; each record keeps every step's loss
(`training.losses`). The distance between two trajectories is the mean absolute difference of their log
losses over the steps both ran (scale-free: a loss of 2.0 vs 2.2 weighs like 0.20 vs 0.22).

The yardstick is the base against itself at another seed (`seed + 1`): a knob that moves the loss by less
than changing the seed does is numerically harmless ("unchanged"); one that moves it by more "changes the
numerics". Knobs that change the model or the optimisation are never called free.

fp16 and GradScaler: the scaler starts at 2**16 and is *meant* to skip steps (inf/NaN gradients, no update)
while its scale backs off to one the gradients fit; over a short run (growth comes every 2000 clean steps)
those skips are a prefix of the run and then stop. They are expected, not divergence. A skipped step updated
nothing, so the candidate's losses are compared with the base's at the same number of *updates* (after k
skips, candidate step i stands beside base step i - k). What "diverges" means:

- a loss that is not finite, or parameters that are not after the run;
- skips that do not stop: GradScaler still skipping in the last quarter of the run (its scale never found
  a value the gradients fit), or more skips than halvings from its initial scale down to 1 could need;
- a loss that stops falling where the base's fell (its last loss at or above its first).
"""

from __future__ import annotations

import math
from typing import Any

from benchbench.record import Record
from benchbench.record.parts import GradScaler

#: skips in the last share of the run mean they did not stop
LATE_SHARE = 0.25


def losses(rec: Record | None) -> list[float]:
    """The trajectory; a non-finite loss was stored as null (JSON has no NaN) and reads as NaN again."""
    if rec is None or rec.training is None:
        return []
    return [math.nan if v is None else float(v) for v in rec.training.losses]


def distance(a: list[float], b: list[float]) -> float | None:
    n = min(len(a), len(b))
    pairs = [(x, y) for x, y in zip(a[:n], b[:n]) if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)]
    if not pairs:
        return None
    return sum(abs(math.log(x) - math.log(y)) for x, y in pairs) / len(pairs)


def scaler(rec: Record) -> GradScaler:
    return (rec.training.grad_scaler if rec.training else None) or GradScaler()


def skipped(rec: Record) -> int:
    return int(scaler(rec).skipped_steps or 0)


def skipped_at(rec: Record) -> list[int] | None:
    """The steps GradScaler skipped, where the record says (older records kept only a count)."""
    at = scaler(rec).skipped_at
    return [int(i) for i in at] if at is not None else None


def aligned(base: list[float], cand: list[float], skips: list[int]) -> tuple[list[float], list[float]]:
    """Candidate steps that updated the model, each beside the base step with the same number of updates."""
    s = set(skips)
    a, b, k = [], [], 0
    for i, v in enumerate(cand):
        if i in s:
            k += 1
            continue
        j = i - k
        if j < len(base):
            a.append(base[j])
            b.append(v)
    return a, b


def skip_judgement(rec: Record, steps: int) -> tuple[str | None, str]:
    """(why it diverges or None, what the skips were) for a candidate's GradScaler skips."""
    n = skipped(rec)
    if not n:
        return None, ""
    init = float(scaler(rec).init_scale or 2.0 ** 16)
    most = max(1, math.ceil(math.log2(init))) + 1  # halvings from the initial scale down to 1, and one more
    at = skipped_at(rec)
    if at is None:  # an older record: only the count is known
        if n > most:
            return f"GradScaler skipped {n} steps, more than its back-off from {init:.0f} can explain", ""
        return None, f"GradScaler skipped {n} step(s) (its scale backing off from {init:.0f})"
    late = [i for i in at if i >= steps * (1 - LATE_SHARE)]
    if late and steps >= 4:
        return (f"GradScaler still skipped {len(late)} of the last {max(1, round(steps * LATE_SHARE))} steps "
                f"(steps {', '.join(map(str, late[:6]))}): its skips did not stop"), ""
    if n > most:
        return f"GradScaler skipped {n} steps, more than its back-off from {init:.0f} can explain", ""
    return None, (f"GradScaler skipped {n} step(s) while its scale backed off from {init:.0f} (steps "
                  f"{', '.join(map(str, at[:8]))}): expected, losses compared at equal updates")


def verdict(base: Record, other_seed: Record | None, cand: Record, kind: str) -> dict[str, Any]:
    """The numerics verdict of a candidate run against a base run of the same seed."""
    lb, lc = losses(base), losses(cand)
    at = skipped_at(cand) or []
    base_cmp, cand_cmp = aligned(lb, lc, at) if at else (lb, lc)
    out: dict[str, Any] = {"distance": distance(base_cmp, cand_cmp), "tolerance": distance(lb, losses(other_seed)),
                           "steps": min(len(lb), len(lc)), "first_loss": lc[0] if lc else None,
                           "last_loss": lc[-1] if lc else None, "skipped_steps": skipped(cand),
                           "skipped_at": skipped_at(cand)}
    bad = [v for v in lc if not math.isfinite(v)]
    bad_params = int((cand.training.nonfinite_params if cand.training else 0) or 0)
    if kind != "free":
        out["verdict"] = f"changes the {kind} — check accuracy"
        if bad or bad_params:
            out["verdict"] = "diverges"
            out["why"] = f"{len(bad)} non-finite loss value(s), {bad_params} non-finite parameter tensor(s)"
        return out
    skip_bad, skip_note = skip_judgement(cand, len(lc))
    updated = [v for i, v in enumerate(lc) if i not in set(at)]
    if not lc or not lb:
        out.update(verdict="unknown", why="no loss trajectory recorded")
    elif bad:
        out.update(verdict="diverges", why=f"{len(bad)} of {len(lc)} losses not finite")
    elif bad_params:
        out.update(verdict="diverges", why=f"{bad_params} parameter tensor(s) not finite after the run")
    elif skip_bad:
        out.update(verdict="diverges", why=skip_bad)
    elif len(lb) > 1 and len(updated) > 1 and lb[-1] < lb[0] and updated[-1] >= updated[0]:
        out.update(verdict="diverges", why=f"loss {updated[0]:.4g} -> {updated[-1]:.4g} did not go down (base "
                                           f"{lb[0]:.4g} -> {lb[-1]:.4g})")
    elif out["tolerance"] is None or out["distance"] is None:
        out.update(verdict="unknown", why="no second-seed trajectory to judge against")
    elif out["distance"] <= out["tolerance"]:
        out.update(verdict="unchanged", why=f"loss moved {out['distance'] * 100:.2g}%, a seed change "
                                            f"{out['tolerance'] * 100:.2g}%")
    else:
        out.update(verdict="changes the numerics", why=f"loss moved {out['distance'] * 100:.2g}%, more than a "
                                                       f"seed change ({out['tolerance'] * 100:.2g}%)")
    if skip_note and out.get("why") and not skip_bad:
        out["why"] += "; " + skip_note
    return out


#: the numerics tolerance's floor: a deterministic CPU script repeats itself exactly, and a fused optimizer's
#: rounding alone moves the loss by far less than 1%
TOLERANCE_FLOOR = 0.01


def numerics(base: list[Record], cand: list[Record]) -> dict[str, Any]:
    """The candidate's losses against the base's, with two base runs' distance (floored) as the tolerance."""
    lb = losses(base[0]) if base else []
    lc = losses(cand[0]) if cand else []
    tol_runs = distance(lb, losses(base[1])) if len(base) > 1 else None
    tol = max(tol_runs or 0.0, TOLERANCE_FLOOR)
    d = distance(lb, lc)
    out: dict[str, Any] = {"distance": d, "tolerance": tol, "base_runs_distance": tol_runs,
                           "steps": min(len(lb), len(lc))}
    if d is None:
        out.update(verdict="unknown", why="no loss trajectory recorded (the script's backward took no scalar loss)")
    elif d <= tol:
        out.update(verdict="unchanged", why=f"loss moved {d * 100:.2g}%, within {tol * 100:.2g}%")
    else:
        out.update(verdict="changes the numerics", why=f"loss moved {d * 100:.2g}%, more than {tol * 100:.2g}%")
    return out

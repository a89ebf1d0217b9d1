"""Whether a report's numbers can be trusted, said before anything else: a degraded machine, a noisy cell.

A throttled or shared GPU, CPU cores another process held while a cell was timed (`record.state`), or steps that
vary so much (CV above `policy.GATE.noisy_step_cv`) that the median is no stable figure: each is a warning at the
top of every report and under the terminal's table, naming the cell and the evidence. Explanations still follow,
but a difference inside this noise is marked unresolved (`records.resolved`), never "measured".
"""

from __future__ import annotations

from benchbench.analysis.records import label, ok
from benchbench.policy import GATE
from benchbench.record import Record


def warnings(records: list[Record]) -> list[str]:
    out = []
    for r in ok(records):
        why = r.degraded()
        if why:
            out.append(f"{label(r)} was measured on a machine not fit to measure on: {why}; rerun it alone")
        cv = r.cv
        # an attached script's epoch starts vary its steps; they are their own finding (`inputs.epoch_starts`)
        if cv is not None and cv > GATE.noisy_step_cv and not _steady_without_epoch_starts(r):
            out.append(f"{label(r)}: its {len(r.samples)} timed steps vary {cv:.0%} (CV; median "
                       f"{r.median * 1e3:.1f} ms, p10-p90 {r.stats['p10'] * 1e3:.1f}-{r.stats['p90'] * 1e3:.1f} ms): "
                       "its median is no stable figure — measure it alone, with more steps")
        if r.attached is not None and r.attached.window_note:
            out.append(f"{label(r)}: {r.attached.window_note}")
        if r.attached is not None:  # what attach saw of the script's run (its own profiler on, runs that failed)
            out += [f"{label(r)}: {w}" for w in r.warnings or []]
    return out


def _steady_without_epoch_starts(r: Record) -> bool:
    """An attached script's steps vary only because some start an epoch: the others are steady."""
    from benchbench.record.stats import summarize

    starts = set(r.attached.epoch_start_steps) if r.attached is not None else set()
    if not starts:
        return False
    rest = [s for i, s in enumerate(r.samples) if i not in starts]
    cv = summarize(rest)["cv"] if len(rest) >= 2 else None
    return cv is not None and cv <= GATE.noisy_step_cv


def runs_warning(what: str, recs: list[Record]) -> str | None:
    """An A/B's runs measured on a degraded machine (advise): how many, and why.

    Base and candidate alternate, so steady contention falls on both sides; contention comes and goes, so a
    burst on one side's run moves the ratio, and the interval cannot tell that from the knob. The verdict
    stands as measured, and this says it was measured on a machine not fit to measure on."""
    done = ok(recs)
    bad = [w for w in (r.degraded() for r in done) if w]
    if not bad:
        return None
    whys = list(dict.fromkeys(bad))
    return (f"{what}: {len(bad)} of {len(done)} runs measured on a machine not fit to measure on ("
            + "; ".join(whys[:3]) + (f"; {len(whys) - 3} more" if len(whys) > 3 else "")
            + "): the verdict may be the machine's, not the knob's — rerun advise alone")

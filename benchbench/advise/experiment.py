"""The experiment a user runs by hand, run for them: one knob at a time, A/B against the base, with an interval.

For each candidate the base and the candidate run interleaved in ABBA order (A B, B A, A B, ..., each in a
fresh process: the machine's drift falls on both, and each side is first of a pair as often as second, so a
GPU that warms within a pair favours neither), and after `min_runs` pairs the gate's own statistics judge the per-image
times (`analysis.gate_stats.judge`: a t interval over run medians, the verdict only where the whole interval
lies): runs are added until the interval decides or `repeat_max` / the budget is reached. The first pair's
loss trajectories decide the numerics (`advise.numerics`). Free knobs that are faster and leave the numerics
unchanged are then applied together and measured against the base the same way: effects do not multiply.

Every run is a normal record (with an `advise` tag) streamed to the results file, so `report`, `compare` and
`history` read them, and `--resume` replays them in the same order instead of running them again.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchbench.advise.candidates import Candidate, candidates
from benchbench.advise.numerics import verdict as numerics_verdict
from benchbench.analysis.gate_stats import ALPHA, judge
from benchbench.analysis.trust import runs_warning
from benchbench.errors import BenchbenchError
from benchbench.policy import ADVISE
from benchbench.record import Record
from benchbench.record.parts import AdviseTag
from benchbench.suite import Cell, Suite, cell_id, make_label


@dataclass
class Options:
    knobs: list[str] | None = None  # named knobs: considered alone, and always measured
    repeat_max: int = ADVISE.repeat_max
    min_runs: int = ADVISE.min_runs
    threshold: float = ADVISE.min_effect  # the smallest speed-up the experiment decides on
    alpha: float = ALPHA
    budget_s: float | None = None


@dataclass
class Outcome:
    candidate: Candidate
    base_runs: list[Record] = field(default_factory=list)
    runs: list[Record] = field(default_factory=list)
    verdict: str = "not measured"
    reason: str = ""
    speedup: float | None = None
    interval: tuple[float, float] | None = None
    mde: float | None = None
    numerics: dict[str, Any] = field(default_factory=dict)
    memory_ratio: float | None = None

    @property
    def bound(self) -> float | None:
        """The candidate's bound set against the base runs its speed-up was measured on (`Candidate.rebased`)."""
        steps = [r.median for r in self.base_runs if r.ok and r.median]
        return self.candidate.rebased(statistics.median(steps) if steps else None)

    @property
    def recommended(self) -> bool:
        return (self.candidate.kind == "free" and self.verdict == "faster"
                and self.numerics.get("verdict") == "unchanged")


class BudgetSpent(Exception):
    pass


class Ledger:
    """Records already measured (a resumed experiment), handed out in the order they were made."""

    def __init__(self, records: list[Record] | None = None) -> None:
        self.queue: dict[tuple[str, str, str], deque[Record]] = defaultdict(deque)
        for r in records or []:
            tag = r.advise or AdviseTag(role="")
            self.queue[(tag.role, tag.knob, r.cell_id)].append(r)

    def take(self, role: str, knob: str, cid: str) -> Record | None:
        q = self.queue.get((role, knob, cid))
        return q.popleft() if q else None


class Experiment:
    def __init__(self, suite: Suite, base: Cell, run_id: str, env: dict[str, Any], run: Callable[[dict], Any],
                 store: Callable[[Record], Record | None], opts: Options, ledger: Ledger | None = None,
                 on_run: Callable[[str, int, float], None] | None = None) -> None:
        self.suite, self.base, self.run_id, self.env = suite, base, run_id, env
        self._run, self._store, self.opts = run, store, opts
        self.ledger = ledger or Ledger()
        self.on_run = on_run or (lambda desc, done, eta: None)
        self.t0 = time.monotonic()
        self.done = 0
        self.run_seconds: list[float] = []
        self.planned = 0

    # ---------------------------------------------------------------- runs
    def cell(self, params: dict[str, Any], label: str) -> Cell:
        return Cell(id=cell_id(params), label=label, params=params)

    def measure(self, cell: Cell, role: str, knob: str, explain: bool = False) -> Record:
        prior = self.ledger.take(role, knob, cell.id)
        if prior is not None:
            self.done += 1
            return prior
        if self.opts.budget_s is not None and time.monotonic() - self.t0 > self.opts.budget_s:
            raise BudgetSpent()
        from benchbench.runner import RunOptions, make_payload
        from benchbench.runner.loop import as_record

        self.on_run(f"{knob or 'base'}: {role} run", self.done, self.eta())
        t = time.monotonic()
        rec = as_record(self._run(make_payload(self.suite, cell, self.run_id, self.env, RunOptions(explain=explain))))
        self.run_seconds.append(time.monotonic() - t)
        rec = rec.model_copy(update={"advise": AdviseTag(role=role, knob=knob, base=self.base.id)})
        rec = self._store(rec) or rec  # the session stamps what it was asked and keeps it
        self.done += 1
        return rec

    def eta(self) -> float:
        per = sum(self.run_seconds) / len(self.run_seconds) if self.run_seconds else 0.0
        return per * max(self.planned - self.done, 0)

    # ---------------------------------------------------------------- the experiment
    def explain_base(self) -> Record:
        rec = self.measure(self.base, "base-explained", "", explain=True)
        if not rec.ok:
            raise BenchbenchError(f"the base cell {self.base.label} did not run: {rec.status}: {rec.error}")
        return rec

    def choose(self, base_rec: Record) -> list[Candidate]:
        from benchbench.workload.preflight import preflight_cells

        named = set(self.opts.knobs or [])
        out = []
        for c in candidates(base_rec, self.env.get("peak_flops")):
            if named and c.knob not in named:
                continue
            if c.knob not in named and c.bound is not None and c.bound < 1 + self.opts.threshold:
                c.skipped = (f"bound {c.bound:.2f}x is below the smallest speed-up this experiment decides on "
                             f"(+{self.opts.threshold:.0%}); name it in --knobs to measure it anyway")
            else:
                try:
                    preflight_cells([self.cell(c.params, "candidate")])
                except BenchbenchError as exc:
                    c.skipped = f"cannot run: {exc}"
            out.append(c)
        unknown = named - {c.knob for c in out}
        if unknown:
            raise BenchbenchError(f"--knobs {', '.join(sorted(unknown))}: not a knob that applies to this cell "
                                  f"(it has {', '.join(sorted({c.knob for c in candidates(base_rec)})) or 'none'})")
        return out

    def ab(self, cand: Candidate, other_seed: Record | None) -> Outcome:
        o = Outcome(cand)
        ccell = self.cell(cand.params, f"{self.base.label} {cand.knob}={_fmt(cand.to)}")
        for k in range(self.opts.repeat_max):
            # ABBA: on a power- or heat-limited GPU the second run of a pair runs warmer; alternating which
            # side goes first puts each side in each position equally often, so position cancels.
            if k % 2 == 0:
                o.base_runs.append(self.measure(self.base, "base", cand.knob))
                o.runs.append(self.measure(ccell, "candidate", cand.knob))
            else:
                o.runs.append(self.measure(ccell, "candidate", cand.knob))
                o.base_runs.append(self.measure(self.base, "base", cand.knob))
            bad = next((r for r in o.runs + o.base_runs if not r.ok), None)
            if bad is not None:
                o.verdict, o.reason = "failed", f"{bad.status}: {bad.error}"
                return o
            if k == 0:
                o.numerics = numerics_verdict(o.base_runs[0], other_seed, o.runs[0], cand.kind)
                if o.numerics.get("verdict") == "diverges":
                    o.verdict, o.reason = "diverges", o.numerics.get("why", "")
                    return o
            if k + 1 >= self.opts.min_runs and self.judge(o) in ("faster", "slower", "unchanged"):
                break
        self.judge(o)
        mb = [r.peak_memory for r in o.base_runs]
        mc = [r.peak_memory for r in o.runs]
        if all(mb) and all(mc):
            o.memory_ratio = (sum(mc) / len(mc)) / (sum(mb) / len(mb))
        return o

    def judge(self, o: Outcome) -> str:
        base = [r.per_image_s for r in o.base_runs]
        cand = [r.per_image_s for r in o.runs]
        res = judge(base, cand, self.opts.threshold, self.opts.alpha)
        o.verdict, o.reason = res["verdict"], res["reason"]
        if res.get("ratio"):
            o.speedup = 1 / res["ratio"]
            o.interval = (1 / res["ci_high"], 1 / res["ci_low"])
            o.mde = res.get("mde")
        return o.verdict

    def run(self) -> AdviseResult:
        result = AdviseResult(self.base)
        try:
            result.base_record = self.explain_base()
            result.candidates = self.choose(result.base_record)
            todo = [c for c in result.candidates if not c.skipped]
            self.planned = self.done + 1 + 2 * self.opts.min_runs * (len(todo) + 1)
            seed_params = {**self.base.params, "seed": self.base.params["seed"] + 1}
            result.other_seed = self.measure(self.cell(seed_params, f"{self.base.label} seed+1"), "seed", "")
            for c in todo:
                result.outcomes.append(self.ab(c, result.other_seed))
            free = [o for o in result.outcomes if o.recommended]
            if len(free) >= 2:
                params = dict(self.base.params)
                for o in free:
                    params.update({k: v for k, v in o.candidate.params.items() if self.base.params.get(k) != v})
                combo = Candidate("combined", None, " + ".join(f"{o.candidate.knob}={_fmt(o.candidate.to)}"
                                                                for o in free), None,
                                  "the recommended free knobs together", "free", params)
                result.combined = self.ab(combo, result.other_seed)
        except BudgetSpent:
            result.budget_spent = True
        result.runs = self.done
        result.seconds = time.monotonic() - self.t0
        return result


@dataclass
class AdviseResult:
    base: Cell
    base_record: Record | None = None
    other_seed: Record | None = None
    candidates: list[Candidate] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    combined: Outcome | None = None
    budget_spent: bool = False
    runs: int = 0
    seconds: float = 0.0

    def ranked(self) -> list[Outcome]:
        """Measured outcomes by what they buy (the lower end of the interval first: what is proven)."""
        measured = sorted(self.outcomes, key=lambda o: -((o.interval or (0, 0))[0] if o.interval else 0))
        skipped = [Outcome(c, verdict="skipped", reason=c.skipped or "") for c in self.candidates if c.skipped]
        unmeasured = [Outcome(c, reason="budget spent") for c in self.candidates
                      if not c.skipped and c not in [o.candidate for o in self.outcomes]]
        return measured + unmeasured + skipped

    @property
    def warnings(self) -> list[str]:
        """Each measured knob whose runs (either side) were taken on a degraded machine, and the base's own."""
        out = [runs_warning(f"the base's explained run ({self.base.label})",
                            [r for r in (self.base_record, self.other_seed) if r is not None])]
        out += [runs_warning(o.candidate.knob, o.base_runs + o.runs)
                for o in self.outcomes + ([self.combined] if self.combined else [])]
        return [w for w in out if w]

    @property
    def recommended(self) -> dict[str, Any]:
        """The configuration to adopt: the combination when measured and faster, else the best single knob."""
        if self.combined is not None and self.combined.verdict == "faster" and \
                self.combined.numerics.get("verdict") == "unchanged":
            best = self.combined
        else:
            free = [o for o in self.outcomes if o.recommended]
            best = max(free, key=lambda o: o.interval[0] if o.interval else 0) if free else None
        if best is None:
            return {"params": self.base.params, "speedup": 1.0, "interval": None, "knobs": []}
        knobs = [best.candidate.knob] if best.candidate.knob != "combined" else [
            o.candidate.knob for o in self.outcomes if o.recommended]
        return {"params": best.candidate.params, "speedup": best.speedup, "interval": best.interval, "knobs": knobs}


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v)


def base_cell(suite: Suite, which: str | None) -> Cell:
    """The suite's only cell, or the one `--cell` names (id prefix or label)."""
    if which:
        hits = [c for c in suite.cells if c.id.startswith(which) or c.label == which]
        if len(hits) != 1:
            raise BenchbenchError(f"--cell {which!r} matches {len(hits)} cells of {suite.name}: "
                                  + ", ".join(f"{c.id} ({c.label})" for c in suite.cells[:12]))
        return hits[0]
    if len(suite.cells) != 1:
        raise BenchbenchError(f"{suite.name} has {len(suite.cells)} cells: choose the base with --cell ID|LABEL ("
                              + ", ".join(f"{c.id} ({c.label})" for c in suite.cells[:12]) + ")")
    c = suite.cells[0]
    return Cell(c.id, c.label if c.label != c.params.get("arch") else make_label(c.params, []), c.params)

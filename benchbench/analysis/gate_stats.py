"""The gate's statistics: an interval over runs, a verdict that is true of it, and the MDE.

Regression verdicts between a baseline and a candidate, run by run.

The unit is the run (one process: `benchbench run --repeat N` makes N of them).
Steps inside one process are not independent samples of "this code on this
machine": allocation, clocks and neighbours move them together, so identical
runs differ by far more than their steps' spread suggests (here 8-12% on a
shared CPU, ~0.1% on an H100). Each run is summarised by its median step
time, and the decision is a confidence interval for the ratio of the sides'
(geometric) mean run medians:

    log ratio = mean(log m_cand) - mean(log m_base)
    se        = s_pooled * sqrt(1/n_base + 1/n_cand)       (s: sd of log run medians)
    interval  = exp(log ratio +- t(1 - alpha/2, n_base + n_cand - 2) * se)     (alpha 0.01: 99%)

A t interval has power at 3 runs a side (df = 4), where an exact rank test on
run medians cannot reach p < 0.10. With one run a side the spread between runs
is unknown: the gate says `noisy` (insufficient runs) unless told the machine's
run-to-run CV (`known_run_cv`), which then gives a z interval.

Verdicts follow the interval, never the point estimate alone:
- slower / faster: the whole interval lies beyond +-threshold;
- unchanged: the whole interval lies within +-threshold;
- noisy: neither, with the bound that is in the way and why (too few runs,
  spread too large, or an effect right at the threshold).

The minimum detectable effect (MDE) of each comparison is the slowdown that
this rule flags with 80% probability at this spread and these numbers of runs:
exp(log(1 + threshold) + ncp * se) - 1, ncp from the noncentral t (Interval.mde).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from benchbench.policy import GATE
from benchbench.record import Record

ALPHA = GATE.alpha  # two-sided: a 99% interval (false alarms measured in benchmarks/gate.py)
POWER = GATE.power  # for the minimum detectable effect
DEFAULT_THRESHOLD = GATE.threshold


def ci_label(alpha: float = ALPHA) -> str:
    """The interval's name in every rendering, from the alpha it was computed at."""
    return f"{1 - alpha:.0%} CI"


@dataclass
class Interval:
    ratio: float
    low: float
    high: float
    se: float  # of the log ratio
    df: float  # inf for a z interval
    run_cv: float | None
    method: str
    se_night: float = 0.0  # of the log ratio, from night-to-night variation (history); included in se

    def mde(self, threshold: float, alpha: float = ALPHA, power: float = POWER) -> float:
        """The slowdown whose interval clears +threshold with probability `power`.

        With an estimated spread (t interval) the power comes from the noncentral t
        distribution, which carries the uncertainty of the spread estimate itself;
        the normal approximation (t_crit + t_power) overstates power at df = 4.
        """
        if math.isinf(self.df):
            q = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
            se = self.se
        else:
            crit = float(stats.t.ppf(1 - alpha / 2, self.df))
            q = float(optimize.brentq(lambda ncp: stats.nct.sf(crit, self.df, ncp) - power, 0.0, 200.0))
            # A sample sd from few runs is usually below the true one (its median is 0.92 sigma at
            # df 4): scale it so the MDE is right for the typical comparison, not optimistic.
            runs = math.sqrt(max(self.se ** 2 - self.se_night ** 2, 0.0))
            se = math.hypot(runs / math.sqrt(stats.chi2.ppf(0.5, self.df) / self.df), self.se_night)
        return math.exp(math.log1p(threshold) + q * se) - 1


def run_medians(recs: list[Record]) -> list[float]:
    """One value per run (process): its median step, from its own samples (a merged record: each of its runs)."""
    return [med for r in recs for med in r.run_medians]


def night_cv(values: list[float]) -> float | None:
    """Night-to-night CV of a cell's history, robust to the steps a change point makes:
    1.4826 x the median |difference| of consecutive log night values, / sqrt(2)."""
    if len(values) < 4:
        return None
    d = np.abs(np.diff(np.log(values)))
    return math.expm1(1.4826 * float(np.median(d)) / math.sqrt(2))


def interval(base: list[float], cand: list[float], alpha: float = ALPHA,
             known_run_cv: float | None = None, between_nights_cv: float | None = None) -> Interval | None:
    """CI of the ratio of geometric mean run medians; None when the spread cannot be known.

    Runs of one night share the machine's state that night, so their spread can
    understate how much two nights differ. `between_nights_cv` (from the cell's
    history) adds that variation for each side: se^2 += 2 log(1 + cv)^2.
    """
    lb, lc = np.log(base), np.log(cand)
    nb, nc = len(lb), len(lc)
    if nb == 0 or nc == 0:
        return None
    d = float(lc.mean() - lb.mean())
    df = nb + nc - 2
    if df >= 2 or (df == 1 and known_run_cv is None):
        ss = float(((lb - lb.mean()) ** 2).sum() + ((lc - lc.mean()) ** 2).sum())
        sp = math.sqrt(ss / df)
        se = sp * math.sqrt(1 / nb + 1 / nc)
        q = float(stats.t.ppf(1 - alpha / 2, df))
        method = f"t interval on log run medians, {nb} vs {nc} runs (df {df})"
        cv = math.expm1(sp)
    elif known_run_cv is not None:
        sp = math.log1p(known_run_cv)
        se = sp * math.sqrt(1 / nb + 1 / nc)
        q = float(stats.norm.ppf(1 - alpha / 2))
        df = math.inf
        method = f"z interval from the known run-to-run CV {known_run_cv:.2%}, {nb} vs {nc} runs"
        cv = known_run_cv
    else:
        return None
    se_night = 0.0
    if between_nights_cv:
        se_night = math.sqrt(2) * math.log1p(between_nights_cv)
        se = math.hypot(se, se_night)
        method += f", plus night-to-night CV {between_nights_cv:.2%} from the history"
    return Interval(math.exp(d), math.exp(d - q * se), math.exp(d + q * se), se, df, cv, method, se_night)


def decide(iv: Interval | None, threshold: float, nb: int, nc: int, alpha: float = ALPHA) -> tuple[str, str]:
    """The verdict and a reason that is true of the interval."""
    up, down = 1 + threshold, 1 / (1 + threshold)
    if iv is None:
        return "noisy", (f"insufficient runs ({nb} vs {nc}): one run a side cannot tell a change from "
                         "process-to-process variation; run with --repeat 3 (or give --run-cv for this machine)")
    ci = f"{iv.ratio - 1:+.1%} [{iv.low - 1:+.1%}, {iv.high - 1:+.1%}]"
    if iv.low > up:
        return "slower", f"{ci}: the whole interval is above +{threshold:.0%}"
    if iv.high < down:
        return "faster", f"{ci}: the whole interval is below -{threshold:.0%}"
    if iv.low >= down and iv.high <= up:
        return "unchanged", f"{ci}: the whole interval is within +-{threshold:.0%}"
    mde = iv.mde(threshold, alpha)
    bound = (f"its upper bound is above +{threshold:.0%}" if iv.high > up else "")
    if iv.low < down:
        bound = (bound + " and " if bound else "") + f"its lower bound is below -{threshold:.0%}"
    if iv.high - iv.low < threshold and (iv.low <= up <= iv.high or iv.low <= down <= iv.high):
        cause = (f"the change is about the threshold itself, at this precision (interval {iv.high - iv.low:.1%} "
                 "wide): more runs narrow it")
    elif min(nb, nc) < 3:
        cause = f"too few runs ({nb} vs {nc}): at this spread the gate sees only changes above {mde:.1%}"
    else:
        cause = (f"run-to-run spread too large (CV {iv.run_cv:.1%}): at {nb} vs {nc} runs the gate sees only "
                 f"changes above {mde:.1%}")
    return "noisy", f"{ci}: {bound}; {cause}"


def judge(base: list[float], cand: list[float], threshold: float = DEFAULT_THRESHOLD, alpha: float = ALPHA,
          known_run_cv: float | None = None, between_nights_cv: float | None = None) -> dict[str, Any]:
    """Verdict fields for one cell from its run medians on each side."""
    iv = interval(base, cand, alpha, known_run_cv, between_nights_cv)
    verdict, reason = decide(iv, threshold, len(base), len(cand), alpha)
    out: dict[str, Any] = {"verdict": verdict, "reason": reason, "threshold": threshold,
                           "baseline_median_s": float(np.median(base)) if base else None,
                           "candidate_median_s": float(np.median(cand)) if cand else None}
    if iv is not None:
        out.update(ratio=iv.ratio, ci_low=iv.low, ci_high=iv.high, mde=iv.mde(threshold, alpha), run_cv=iv.run_cv,
                   method=iv.method)
    return out


#: A run-to-run CV to assume where a report has one run a cell. A suite's cells run minutes apart: on this
#: shared 2-core CPU, 120 runs of one 25-minute gate experiment had CV 8.6% (adjacent runs 2-4%); a
#: GPU-bound H100 cell ~0.1%, a launch-bound one several %. Measured spread (`--repeat`) replaces it.
ASSUMED_RUN_CV = GATE.assumed_run_cv


def resolution(ratio: float, cv: float, n_a: int = 1, n_b: int = 1, alpha: float = ALPHA,
               power: float = POWER) -> tuple[bool, int]:
    """Whether a ratio of two cells' steps is beyond run-to-run variation at these runs (z interval at the
    gate's alpha), and the runs a side that would resolve it (80% power), from the run-to-run CV."""
    s = math.log1p(cv)
    effect = abs(math.log(ratio)) if ratio > 0 else 0.0
    resolved = effect > float(stats.norm.ppf(1 - alpha / 2)) * s * math.sqrt(1 / n_a + 1 / n_b)
    if effect == 0:
        return resolved, 10**6
    q = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    return resolved, max(2, math.ceil(2 * (q * s / effect) ** 2))

"""What a run costs before and around its cells, measured alone, side by side in rounds:

1. **One-cell run against a bare import**: `benchbench run` on a one-cell suite (Unet resnet18, 32 px, batch 2,
   1 warm-up + 1 timed step, explanations on) against `python -c "import torch, segmentation_models_pytorch"`
   in the same venv, each in a fresh process; the run both the first time on a machine (an empty cache: the
   device's peak is calibrated) and the second (the peak kept). Goal: the second run <= 1.6x the bare import.
2. **Per extra cell**: the same suite with 8 cells (seeds) against the one-cell run, both with the peak kept:
   (8-cell run - 1-cell run) / 7. Goal <= 1.5 s.
3. **attach's fixed cost per run** (what each `advise --attach` run pays): `benchbench attach` on
   tests/scripts/train_synthetic.py against the bare script run for the same number of steps.

Every figure is a wall time from outside the process (its own start-up included). Each round runs the arms in a
rotated order; ratios are geometric means over rounds with a 95% t interval on the paired log ratios.

    python benchmarks/startup.py --rounds 5 --out benchmarks/results/startup-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cell_cost import SUITE  # 8 seeds of one tiny cell: Unet resnet18, 32 px, batch 2, 1+1 steps
from paired import ratio_interval, report

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "train_synthetic.py"


def _wall(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])} failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    return wall, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-startup-"))
    (tmp / "eight.yaml").write_text(SUITE)
    one = [str(tmp / "eight.yaml"), "--filter", "seed=0"]  # the one-cell run: the same suite filtered
    base_env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    warm_cache = tmp / "cache-kept"
    arms = ("bare", "first", "second", "eight", "attach")
    walls: dict[str, list[float]] = {a: [] for a in arms}
    walls["bare_script"] = []
    parts: list[str] = []
    # the kept peak, as a machine has it after its first run
    _wall([sys.executable, "-m", "benchbench", "run", *one, "--device", "cpu", "-o", str(tmp / "w.jsonl"),
           "--reports-dir", str(tmp / "rep")], {**base_env, "BENCHBENCH_CACHE": str(warm_cache)})
    for r in range(args.rounds):
        for arm in arms[r % len(arms):] + arms[: r % len(arms)]:
            out = tmp / f"{arm}{r}.jsonl"
            env = {**base_env, "BENCHBENCH_CACHE": str(warm_cache)}
            run = [sys.executable, "-m", "benchbench", "run", "--device", "cpu", "-o", str(out), "--reports-dir",
                   str(tmp / "rep")]
            if arm == "bare":
                cmd = [sys.executable, "-c", "import torch, segmentation_models_pytorch"]
            elif arm == "first":  # an empty cache: this machine's first run
                env["BENCHBENCH_CACHE"] = str(tmp / f"cache-empty-{r}")
                cmd = [*run, *one]
            elif arm == "second":
                cmd = [*run, "--verbose", *one]
            elif arm == "eight":
                cmd = [*run, str(tmp / "eight.yaml")]
            else:
                cmd = [sys.executable, "-m", "benchbench", "attach", "--steps", "20", "--output", str(out),
                       "-o", str(tmp / "rep"), "--", sys.executable, str(SCRIPT)]
            wall, stdout = _wall(cmd, env)
            walls[arm].append(wall)
            if arm == "second":
                parts.append(next((ln for ln in stdout.splitlines() if ln.startswith("elapsed")), ""))
            if arm == "attach":
                steps = (json.loads(out.read_text().splitlines()[-1]).get("attached") or {}).get("steps_seen")
                walls["bare_script"].append(_wall([sys.executable, str(SCRIPT), "--steps", str(steps)],
                                                  base_env)[0])
            print(f"round {r + 1} {arm}: {wall:.2f} s", flush=True)
    second_over_bare = ratio_interval(walls["second"], walls["bare"])
    first_over_bare = ratio_interval(walls["first"], walls["bare"])
    per_cell = [(e - s) / 7 for e, s in zip(walls["eight"], walls["second"], strict=True)]
    attach_fixed = [a - b for a, b in zip(walls["attach"], walls["bare_script"], strict=True)]
    med = {k: statistics.median(v) for k, v in walls.items()}
    report({"rounds": args.rounds, "wall_s": walls, "median_s": med,
            "second_run_over_bare_import": {"ratio": second_over_bare[0], "interval": list(second_over_bare[1:]),
                                            "goal": 1.6},
            "first_run_over_bare_import": {"ratio": first_over_bare[0], "interval": list(first_over_bare[1:])},
            "per_extra_cell_s": {"median": statistics.median(per_cell), "min": min(per_cell),
                                 "max": max(per_cell), "goal": 1.5},
            "attach_fixed_cost_s": {"median": statistics.median(attach_fixed), "min": min(attach_fixed),
                                    "max": max(attach_fixed)},
            "second_run_parts": parts,
            "load_average_after": os.getloadavg(),
            "command": f"python benchmarks/startup.py --rounds {args.rounds}"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

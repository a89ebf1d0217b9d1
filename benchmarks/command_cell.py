"""The same training three ways, and what a command cell costs beyond the script itself.

1. **Step times agree**: a built suite cell (`benchbench run`, Unet resnet18 64 px batch 4 AdamW), the same
   training as a script under `benchbench attach` (tests/scripts/train_synthetic.py), and that script as the one
   cell of a command suite (`command: python train_synthetic.py --batch-size {batch_size}`): each round runs all
   three, in a rotated order; the ratios of the command cell's median step to the other two (geometric mean over
   rounds, a 95% t interval on the paired log ratios) should hold 1.
2. **Fixed cost**: the command suite's whole `benchbench run` wall time against the bare script run for the same
   number of optimizer steps (`--steps` = the cell's warm-up + timed + profiled steps): the difference is what a
   command cell costs beyond the script's own start-up and steps (benchbench's start, the cell's process, the
   hooks, the explanation, the reports).

    python benchmarks/command_cell.py --rounds 5 --out benchmarks/results/command-cell-YYYYMMDD.json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attach_vs_run import SUITE  # noqa: E402
from paired import ratio_interval, report  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "train_synthetic.py"
COMMAND_SUITE = f"""name: command_cell
command: {sys.executable} {SCRIPT} --steps 100000 --batch-size {{batch_size}}
matrix: {{batch_size: [4]}}
warmup: 10
steps: 20
profile_steps: 2
device: cpu
"""


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-command-cell-"))
    (tmp / "s.yaml").write_text(SUITE)
    (tmp / "c.yaml").write_text(COMMAND_SUITE)
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    arms = ("run", "attach", "command")
    median: dict[str, list[float]] = {a: [] for a in arms}
    walls: dict[str, list[float]] = {"command_suite_wall_s": [], "bare_script_wall_s": []}
    for r in range(args.rounds):
        for name in arms[r % 3:] + arms[: r % 3]:
            out = tmp / f"{name}{r}.jsonl"
            if name == "run":
                cmd = [sys.executable, "-m", "benchbench", "run", str(tmp / "s.yaml"), "--device", "cpu",
                       "--no-explain", "--output", str(out), "--reports-dir", str(tmp / "rep")]
            elif name == "attach":
                cmd = [sys.executable, "-m", "benchbench", "attach", "--steps", "20", "--profile-steps", "0",
                       "--output", str(out), "-o", str(tmp / "rep"), "--", sys.executable, str(SCRIPT)]
            else:
                cmd = [sys.executable, "-m", "benchbench", "run", str(tmp / "c.yaml"), "--output", str(out),
                       "--reports-dir", str(tmp / "rep")]
            wall = _run(cmd, env)
            rec = json.loads(out.read_text().splitlines()[-1])
            median[name].append(rec["step_time_s"]["median"])
            if name == "command":
                walls["command_suite_wall_s"].append(wall)
                steps = (rec.get("attached") or {}).get("steps_seen") or 32
                walls["bare_script_wall_s"].append(_run([sys.executable, str(SCRIPT), "--steps", str(steps)], env))
            print(f"round {r + 1} {name}: {rec['step_time_s']['median'] * 1e3:.1f} ms, wall {wall:.1f} s", flush=True)
    vs_run = ratio_interval(median["command"], median["run"])
    vs_attach = ratio_interval(median["command"], median["attach"])
    fixed = [c - b for c, b in zip(walls["command_suite_wall_s"], walls["bare_script_wall_s"], strict=True)]
    report({"rounds": args.rounds, "median_step_s": median, **walls,
            "command_over_run": {"ratio": vs_run[0], "interval": list(vs_run[1:])},
            "command_over_attach": {"ratio": vs_attach[0], "interval": list(vs_attach[1:])},
            "fixed_cost_s": {"median": statistics.median(fixed), "min": min(fixed), "max": max(fixed)},
            "load_average_after": os.getloadavg(),
            "command": f"python benchmarks/command_cell.py --rounds {args.rounds}"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

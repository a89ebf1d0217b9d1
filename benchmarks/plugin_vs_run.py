"""The pytest plugin's numbers against `benchbench run`'s, on the same cell, alternated.

Both measure with the one cell program (`runner.program`); the plugin runs it inside the pytest process, `run`
in a fresh process per cell. Each round runs the cell once through `benchbench run` and once through pytest
with the `benchbench_cell` fixture (`--benchmark-json`); the median step of each is kept. The plugin agrees
with `run` when the ratio of their medians (geometric mean over rounds) is within the rounds' own run-to-run
variation: its 95% interval (Welch's t on the log medians) holds 1.

    python benchmarks/plugin_vs_run.py --rounds 5 --out benchmarks/results/plugin-vs-run-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = """name: plugin_vs_run
arch: Unet
encoder: resnet18
resolution: 64
batch_size: 4
classes: 3
data: synthetic
warmup: 3
steps: 15
"""

TEST = '''import pytest
from benchbench.pytest_plugin import suite_cells


@pytest.mark.parametrize("cell", suite_cells({suite!r}, device="cpu"))
def test_cell(benchbench_cell, cell):
    benchbench_cell(cell)
'''


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = {**os.environ, "COLUMNS": "160"}
    run_s, plugin_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "s.yaml"
        suite.write_text(SUITE)
        test = Path(tmp) / "test_cell.py"
        test.write_text(TEST.format(suite=str(suite)))
        for i in range(args.rounds):
            out = Path(tmp) / f"r{i}.jsonl"
            subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out),
                            "--no-explain", "--reports-dir", str(Path(tmp) / "rep")], check=True,
                           capture_output=True, text=True, env=env)
            [rec] = [json.loads(x) for x in out.read_text().splitlines()]
            run_s.append(rec["step_time_s"]["median"])
            bj = Path(tmp) / f"b{i}.json"
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test),
                            f"--benchmark-json={bj}"], check=True, capture_output=True, text=True, env=env,
                           cwd=tmp)
            [b] = json.loads(bj.read_text())["benchmarks"]
            plugin_s.append(b["stats"]["median"])

    def cv(xs: list[float]) -> float:
        return statistics.stdev(xs) / statistics.mean(xs) if len(xs) > 1 else float("nan")

    from scipy import stats

    # Welch's t on the log medians: the ratio's 95% interval over rounds, each side's spread its own.
    lp, lr = [math.log(x) for x in plugin_s], [math.log(x) for x in run_s]
    ratio = math.exp(statistics.mean(lp) - statistics.mean(lr))
    t = stats.ttest_ind(lp, lr, equal_var=False)
    ci = t.confidence_interval(0.95)
    res = {"rounds": args.rounds, "run_median_s": run_s, "plugin_median_s": plugin_s,
           "plugin_over_run": ratio, "interval_95": [math.exp(ci.low), math.exp(ci.high)], "p_value": t.pvalue,
           "run_cv": cv(run_s), "plugin_cv": cv(plugin_s),
           "within_variation": bool(ci.low <= 0 <= ci.high), "loadavg": os.getloadavg()}
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

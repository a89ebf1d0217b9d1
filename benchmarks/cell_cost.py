"""Per-cell fixed cost, with and without explanations, on a tiny cell: what `advise` pays per run.

`--cli` (the figure the README quotes): `benchbench run` on a suite of 8 tiny cells and on the same suite
filtered to 1 cell, each in a fresh process, alternated `--rounds` times; the fixed cost of a cell is
(8-cell run - 1-cell run) / 7: everything a cell costs through the CLI beyond the first (its fork from the fork
server, build, warm-up and timed steps, the explanation passes, the record, the progress line), with the CLI's
start, imports, preflight and calibration paid once and cancelled out. Each record's `process_wall_s` and
`explain_s` say where a cell's share goes.

In-process (no `--cli`): the cell (Unet/resnet18, 32 px, batch 2, 1 warm-up + 1 timed step) is run through the
runner's own `execute_cell` (build, warm-up, timing, and the explanation passes when asked), alternating
explain on and off, `--rounds` times each; medians and each pass's median cost. A fresh process per cell
adds the fork from the fork server (~0.1-0.2 s, `process_wall_s - wall_s` in any record).

    python benchmarks/cell_cost.py --rounds 7
    python benchmarks/cell_cost.py --cli --rounds 3
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

SUITE = """name: cost
matrix:
  seed: [0, 1, 2, 3, 4, 5, 6, 7]
arch: Unet
encoder: resnet18
resolution: 32
batch_size: 2
classes: 3
data: synthetic
warmup: 1
steps: 1
"""


def cli_cost(rounds: int) -> dict:
    """(8 cells - 1 cell) / 7 through `benchbench run`, with explanations, each run a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "cost.yaml"
        suite.write_text(SUITE)

        def run(n: int, i: int) -> tuple[float, list[dict]]:
            out = Path(tmp) / f"r{n}-{i}.jsonl"
            cmd = [sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out), "--reports-dir",
                   str(Path(tmp) / f"rep{n}-{i}")] + (["--filter", "seed=0"] if n == 1 else [])
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"})
            wall = time.perf_counter() - t
            recs = [json.loads(x) for x in out.read_text().splitlines()]
            assert len(recs) == n and all(r["status"] == "ok" for r in recs), recs
            return wall, recs

        one, eight, recs8 = [], [], []
        for i in range(rounds):  # alternated: a drift in the machine's speed falls on both
            one.append(run(1, i)[0])
            w, r = run(8, i)
            eight.append(w)
            recs8.append(r)
    per_cell = [(e - o) / 7 for e, o in zip(eight, one)]
    cells = [r for rs in recs8 for r in rs[1:]]

    def med(key: str) -> float | None:
        xs = [r[key] for r in cells if isinstance(r.get(key), (int, float))]
        return statistics.median(xs) if xs else None

    explain = {k: statistics.median((r.get("explain_s") or {}).get(k, 0.0) for r in cells)
               for k in (cells[0].get("explain_s") or {})}
    return {"rounds": rounds, "fixed_cost_per_cell_s": statistics.median(per_cell), "per_round_s": per_cell,
            "run_1_cell_s": one, "run_8_cells_s": eight,
            "where_a_cell_goes_s": {"process_wall": med("process_wall_s"), "cell_wall": med("wall_s"),
                                    "build": med("build_s"), "explain_passes": explain},
            "loadavg": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cli", action="store_true", help="(8 cells - 1 cell) / 7 through `benchbench run`")
    args = ap.parse_args()
    if args.cli:
        out = cli_cost(args.rounds)
        print(json.dumps(out, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        return 0
    from benchbench.runner.cell import execute_cell
    from benchbench.suite import CellParams

    p = CellParams(arch="Unet", encoder="resnet18", resolution=32, batch_size=2, classes=3, warmup=1, steps=1,
                   device="cpu").model_dump(mode="json")

    def cell(explain: bool) -> tuple[float, dict]:
        t = time.perf_counter()
        rec = execute_cell({"suite": "cost", "run_id": "r", "cell_id": "c", "label": "c", "params": p,
                            "explain": explain})
        assert rec["status"] == "ok", rec["error"]
        return time.perf_counter() - t, rec.get("explain_s") or {}

    cell(True)  # imports, first-use initialisation
    on, off, passes = [], [], []
    for _ in range(args.rounds):
        s, parts = cell(True)
        on.append(s)
        passes.append(parts)
        off.append(cell(False)[0])
    out = {"rounds": args.rounds, "with_explanations_s": statistics.median(on),
           "without_explanations_s": statistics.median(off),
           "passes_s": {k: statistics.median(d[k] for d in passes) for k in passes[0]},
           "samples": {"on": on, "off": off}}
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-cell fixed cost, with and without explanations, on a tiny cell: what `advise` pays per run.

One process; the cell (Unet/resnet18, 32 px, batch 2, 1 warm-up + 1 timed step) is run through the
runner's own `execute_cell` (build, warm-up, timing, and the explanation passes when asked), alternating
explain on and off, `--rounds` times each; medians and each pass's median cost. A fresh process per cell
adds the fork from the fork server (~0.1-0.2 s, `process_wall_s - wall_s` in any record).

    python benchmarks/cell_cost.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
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

"""The capacity model against measurement: the step time it predicts for each num_workers beside the step the
cells with that many workers measured.

Runs (or reads) two suites on this machine: `suites/input_pipeline.yaml` (benchbench's own PNG pipeline) and a
user-style one (tests/user_pipeline.py's CamVid `Dataset` class: OpenCV + albumentations, image and mask
together, on generated CamVid-layout PNGs). Every cell's capacity pass predicts the step for 0..cores workers;
for each group of cells that differ in num_workers alone, each prediction is set beside the measured cell with
that worker count — its own (the cell predicting itself) and the others' (a 0-worker cell predicting the
2-worker one). Goal: within 15%.

    python benchmarks/capacity_check.py --out benchmarks/results/capacity-check-YYYYMMDD.md
    python benchmarks/capacity_check.py --results A.jsonl B.jsonl   # tables from runs already made
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_SUITE = """name: user_camvid
description: a user's CamVid Dataset class (OpenCV + albumentations) at 0, 1 and 2 workers
arch: Unet
encoder: resnet18
classes: 12
resolution: 128
batch_size: 4
warmup: 5
steps: 15
data: {{dataset: user_pipeline:camvid_albumentations, root: {root}}}
matrix:
  num_workers: [0, 1, 2]
"""


def key(r: dict) -> str:
    p = {k: v for k, v in r["params"].items() if k not in ("num_workers", "persistent_workers", "prefetch_factor")}
    return json.dumps(p, sort_keys=True)


def table(recs: list[dict]) -> tuple[list[str], list[float]]:
    groups: dict[str, list[dict]] = {}
    for r in recs:
        if r["status"] == "ok" and r.get("input_capacity"):
            groups.setdefault(key(r), []).append(r)
    lines = ["| cells | predicted by | workers | predicted ms | measured ms | error |", "|---|---|---|---|---|---|"]
    errors = []
    for g in groups.values():
        measured = {r["params"]["num_workers"]: r["step_time_s"]["median"] for r in g}
        name = re.sub(r"\s*(workers|num_workers|nw)=\d+", "", g[0]["label"]).strip() or "-"
        for r in sorted(g, key=lambda r: r["params"]["num_workers"]):
            for p in r["input_capacity"]["predicted"]:
                m = measured.get(p["workers"])
                if m is None:
                    continue
                err = p["step_s"] / m - 1
                errors.append(err)
                own = r["params"]["num_workers"]
                who = "itself" if p["workers"] == own else f"the {own}-worker cell"
                lines.append(f"| {name} | {who} | {p['workers']} | {p['step_s'] * 1e3:.0f} | {m * 1e3:.0f} "
                             f"| {err:+.0%} |")
    return lines, errors


def run(suite: Path, out: Path, cwd: Path) -> list[dict]:
    subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--device", "cpu", "--output", str(out),
                    "--reports-dir", str(out.parent / "rep")], check=True, cwd=cwd,
                   env={**os.environ, "COLUMNS": "160"})
    return [json.loads(x) for x in out.read_text().splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", nargs="*", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sets: list[tuple[str, list[dict]]] = []
    if args.results:
        for f in args.results:
            sets.append((f, [json.loads(x) for x in Path(f).read_text().splitlines()]))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bb-capacity-"))
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_camvid

        root = make_camvid(tmp / "camvid", n=48, size=(360, 480))
        user = tmp / "user.yaml"
        user.write_text(USER_SUITE.format(root=root))
        sets.append(("suites/input_pipeline.yaml", run(ROOT / "suites" / "input_pipeline.yaml", tmp / "own.jsonl",
                                                       ROOT)))
        sets.append(("a user's CamVid Dataset (OpenCV + albumentations)", run(user, tmp / "user.jsonl",
                                                                              ROOT / "tests")))
    text = []
    for name, recs in sets:
        lines, errors = table(recs)
        inside = sum(abs(e) <= 0.15 for e in errors)
        text += [f"## {name}", "", *lines, "",
                 f"{inside} of {len(errors)} predictions within 15%; median |error| "
                 f"{sorted(abs(e) for e in errors)[len(errors) // 2]:.0%}" if errors else "no prediction", ""]
    text.append(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

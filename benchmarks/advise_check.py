"""Check advise's measured speed-up against the same comparison made with `run --repeat` and the gate.

Runs two cells of one suite as plain `benchbench run --repeat N --no-explain` (each run a fresh process,
round by round), then computes the gate's interval (`analysis.gate_stats.judge`, 99%) on their per-image
run medians — the comparison `compare` would make were they the same cell — and prints it beside the
advise JSON's figure for that knob.

    python benchmarks/advise_check.py SUITE --knob decoder_channels=128 --advise advise.json [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("--knob", required=True, help="KEY=VALUE: the candidate cell (the suite is the base)")
    ap.add_argument("--advise", help="advise --json output to compare with")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from benchbench.analysis.gate_stats import judge
    from benchbench.results import read_records

    key, value = args.knob.split("=", 1)
    doc = yaml.safe_load(Path(args.suite).read_text())
    base = doc.get(key)
    doc["matrix"] = {key: [base, yaml.safe_load(value)]}
    doc.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "pair.yaml"
        suite.write_text(yaml.safe_dump(doc))
        out = Path(tmp) / "r.jsonl"
        subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--repeat", str(args.repeat),
                        "--no-explain", "--output", str(out), "--reports-dir", str(Path(tmp) / "rep")], check=True,
                       stdout=subprocess.DEVNULL)
        recs = read_records([out])
    runs: dict[str, list[float]] = {}
    for r in recs:
        runs.setdefault(str(r.params[key]), []).append(r.per_image_s)
    b, c = runs[str(base)], runs[str(yaml.safe_load(value))]
    res = judge(b, c, 0.05)
    speed, lo, hi = 1 / res["ratio"], 1 / res["ci_high"], 1 / res["ci_low"]
    print(f"run --repeat {args.repeat} + gate interval: {key} {base} -> {value}: {speed:.2f}x [{lo:.2f}, {hi:.2f}] "
          f"({res['verdict']})")
    if args.advise:
        adv = json.loads(Path(args.advise).read_text())
        for cand in adv["candidates"]:
            if cand["knob"] == key and str(cand["to"]) == str(yaml.safe_load(value)):
                ci = cand["interval"] or [None, None]
                print(f"advise: {cand['speedup']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}] ({cand['verdict']}); "
                      f"within the run+gate interval: {lo <= cand['speedup'] <= hi}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

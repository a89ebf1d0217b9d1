"""The same cell measured two ways: as a suite cell (`benchbench run`) and as a user's script under
`benchbench attach` (tests/scripts/train_synthetic.py trains what the cell trains, as a plain loop).

Each round runs both, alternating which goes first; the median step of each is kept. They agree when the
ratio of their medians (geometric mean over rounds) has a 95% interval (t on the paired log ratios) that holds 1.

    python benchmarks/attach_vs_run.py --rounds 5 --out benchmarks/results/attach-vs-run-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import ratio_interval, report  # noqa: E402

SUITE = """name: attach_vs_run
arch: Unet
encoder: resnet18
resolution: 64
batch_size: 4
classes: 3
optimizer: adamw
data: synthetic
warmup: 10
steps: 20
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-attach-vs-run-"))
    (tmp / "s.yaml").write_text(SUITE)
    env = {**os.environ, "COLUMNS": "200"}
    run_s, attach_s = [], []
    for r in range(args.rounds):
        for name in (("run", "attach") if r % 2 == 0 else ("attach", "run")):
            out = tmp / f"{name}{r}.jsonl"
            if name == "run":
                cmd = [sys.executable, "-m", "benchbench", "run", str(tmp / "s.yaml"), "--device", "cpu",
                       "--no-explain", "--output", str(out), "--reports-dir", str(tmp / "rep")]
            else:
                cmd = [sys.executable, "-m", "benchbench", "attach", "--steps", "20", "--profile-steps", "0",
                       "--output", str(out), "-o", str(tmp / "rep"), "--", sys.executable,
                       str(ROOT / "tests" / "scripts" / "train_synthetic.py")]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
            if p.returncode != 0:
                raise SystemExit(f"{name} failed ({p.returncode}):\n{p.stderr[-2000:]}")
            rec = json.loads(out.read_text().splitlines()[-1])
            (run_s if name == "run" else attach_s).append(rec["step_time_s"]["median"])
            print(f"round {r + 1} {name}: {rec['step_time_s']['median'] * 1e3:.1f} ms", flush=True)
    ratio, low, high = ratio_interval(attach_s, run_s)
    report({"rounds": len(run_s), "run_median_s": run_s, "attach_median_s": attach_s, "ratio_attach_over_run": ratio,
            "interval": [low, high], "load_average_after": os.getloadavg(),
            "command": f"python benchmarks/attach_vs_run.py --rounds {args.rounds}"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What `benchbench attach` costs the script it measures, by the script's own timer.

`tests/scripts/train_camvid.py` (a plain PyTorch CamVid loop, Unet resnet18) times its own steps with
perf_counter (`--speed-from 10 --speed-steps 56`: steps 10-66) and prints steps/s. Each round runs it once
alone and once under `benchbench attach --keep-running --steps 63 --warmup 2 --profile-steps 0`, whose timed
block (steps 3-66) covers the script's window, in alternating order (AB, BA, ...). The overhead is the ratio of
the script's own speeds, paired by round; its 95% interval is a t interval on the log ratios. Goal: within 2%.

    python benchmarks/attach_overhead.py --rounds 6 --out benchmarks/results/attach-overhead-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import ratio_interval, report  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "train_camvid.py"


def speed(out: str) -> float:
    m = re.search(r"speed: ([\d.]+) steps/s", out)
    if not m:
        raise SystemExit(f"the script printed no speed:\n{out[-2000:]}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-attach-overhead-"))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_camvid

    data = make_camvid(tmp / "camvid", n=16)
    script = [sys.executable, str(SCRIPT), "--data", str(data), "--epochs", "1000", "--size", str(args.size),
              "--speed-from", "10", "--speed-steps", "56"]
    attached = [sys.executable, "-m", "benchbench", "attach", "--keep-running", "--steps", "63", "--warmup", "2",
                "--profile-steps", "0", "--results-dir", str(tmp / "res"), "-o", str(tmp / "rep"), "--", *script]
    env = {**os.environ, "COLUMNS": "200"}
    alone, under = [], []
    for r in range(args.rounds):
        for name in (("alone", "attach") if r % 2 == 0 else ("attach", "alone")):
            cmd = script if name == "alone" else attached
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
            if p.returncode != 0:
                raise SystemExit(f"{name} failed ({p.returncode}):\n{p.stderr[-2000:]}")
            (alone if name == "alone" else under).append(speed(p.stdout))
            print(f"round {r + 1} {name}: {(alone if name == 'alone' else under)[-1]:.3f} steps/s", flush=True)
    ratio, low, high = ratio_interval(alone, under)  # > 1: the script is faster alone, attach costs it
    report({"rounds": len(alone), "alone_steps_s": alone, "attached_steps_s": under, "overhead": ratio - 1,
            "interval": [low - 1, high - 1], "command": f"python benchmarks/attach_overhead.py --rounds {args.rounds}",
            "load_average_after": os.getloadavg(), "goal": "within 2%"}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

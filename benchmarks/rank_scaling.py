"""Two ranks on this CPU: what `attach` costs each rank, and whether the scaling answer of the attached script
agrees with a suite's DDP cells.

1. Cost per rank. `tests/scripts/train_ddp.py` under `torchrun --nproc-per-node 2` times its own steps on rank 0
   (`--speed-from 8 --speed-steps 40`: steps 8-48; every rank stops at step 48) and prints steps/s. Each round
   runs it once bare and once under `benchbench attach --keep-running --steps 40 --profile-steps 0` (every rank
   attached: the hooks, the clocks, the gradient hooks on every parameter), alternating the order. In DDP a step
   takes as long as the slowest rank, so rank 0's speed is the job's. The overhead is the ratio of the script's
   own speeds, paired by round, with a t interval on the log ratios. Goal: within 2%.

2. Scaling 1 -> 2 ranks. The suite cell (Unet resnet18, 32 px, batch 2 a rank, SGD, world_size 1 and 2,
   `run --no-explain`) and the same model in the user's script (`advise --attach --ranks 1,2`, one run a count
   a round). Each round gives each side's efficiency (throughput at 2 / twice the throughput at 1); the two
   agree where their difference is within the rounds' spread. The attached side is given two ways: its answer's
   (the mean step, whose parts add up) and the suite's own statistic (each step as long as its slowest rank,
   the median step). Known difference of method: the suite's one-rank cell trains without DDP; the user's
   script at one rank is DDP over one process.

    python benchmarks/rank_scaling.py --rounds 6 --out benchmarks/results/rank-scaling-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import ratio_interval, report  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "train_ddp.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
SUITE = """name: rank-scaling
arch: Unet
encoder: resnet18
resolution: 32
batch_size: 2
classes: 12
optimizer: sgd
device: cpu
warmup: 5
steps: 20
matrix:
  world_size: [1, 2]
"""


def run(cmd: list[str], env: dict[str, str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}… failed ({p.returncode}):\n{p.stdout[-1500:]}\n{p.stderr[-2000:]}")
    return p.stdout


def speed(out: str) -> float:
    m = re.search(r"speed: ([\d.]+) steps/s", out)
    if not m:
        raise SystemExit(f"the script printed no speed:\n{out[-2000:]}")
    return float(m.group(1))


def suite_efficiency(tmp: Path, k: int, env: dict[str, str]) -> float:
    out = tmp / f"suite{k}.jsonl"
    run([sys.executable, "-m", "benchbench", "run", str(tmp / "s.yaml"), "--no-explain", "--output", str(out),
         "--reports-dir", str(tmp / "rep")], env)
    tp = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        tp[r["params"]["world_size"]] = r["throughput_img_s"]
    return tp[2] / (2 * tp[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-rank-scaling-"))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_camvid

    data = make_camvid(tmp / "camvid", n=32)
    (tmp / "s.yaml").write_text(SUITE)
    env = {**os.environ, "COLUMNS": "200"}
    script = [*TORCHRUN, "--nproc-per-node", "2", str(SCRIPT), "--data", str(data), "--epochs", "1000",
              "--speed-from", "8", "--speed-steps", "40"]
    attached = [sys.executable, "-m", "benchbench", "attach", "--keep-running", "--steps", "40", "--profile-steps",
                "0", "--results-dir", str(tmp / "res"), "-o", str(tmp / "rep"), "--", *script]
    bare, under, eff_suite, eff_attach, eff_attach_median = [], [], [], [], []
    for r in range(args.rounds):
        for name in (("bare", "attach") if r % 2 == 0 else ("attach", "bare")) if not args.skip_cost else ():
            s = speed(run(script if name == "bare" else attached, env))
            (bare if name == "bare" else under).append(s)
            print(f"round {r + 1} {name}: {s:.3f} steps/s", flush=True)
        if args.skip_scaling:
            continue
        for name in (("suite", "attach") if r % 2 == 0 else ("attach", "suite")):
            if name == "suite":
                eff_suite.append(suite_efficiency(tmp, r, env))
            else:
                js = tmp / f"adv{r}.json"
                run([sys.executable, "-m", "benchbench", "advise", "--attach", "--ranks", "1,2", "--min-runs", "1",
                     "--steps", "20", "--results-dir", str(tmp / "res"), "-o", str(tmp / "rep"), "--json", str(js),
                     "--", *TORCHRUN, "--nproc-per-node", "2", str(SCRIPT), "--data", str(data)], env)
                row = json.loads(js.read_text())["rows"][1]
                eff_attach.append(row["efficiency"])
                eff_attach_median.append(row["efficiency_median_step"])
            print(f"round {r + 1} {name} efficiency: {(eff_suite if name == 'suite' else eff_attach)[-1]:.3f}",
                  flush=True)
    doc: dict[str, object] = {"rounds": args.rounds, "command": " ".join(["python", *sys.argv]),
                              "load_average_after": os.getloadavg()}
    if bare:
        ratio, low, high = ratio_interval(bare, under)
        doc.update(bare_steps_s=bare, attached_steps_s=under, overhead=ratio - 1, interval=[low - 1, high - 1],
                   goal="within 2%")
    if eff_suite:
        diff = [a - s for a, s in zip(eff_attach, eff_suite, strict=True)]
        doc.update(efficiency_suite=eff_suite, efficiency_attach=eff_attach,
                   efficiency_attach_by_median_step=eff_attach_median,
                   efficiency_attach_by_median_step_median=statistics.median(eff_attach_median),
                   efficiency_suite_median=statistics.median(eff_suite),
                   efficiency_attach_median=statistics.median(eff_attach),
                   difference_median=statistics.median(diff),
                   spread_suite=[min(eff_suite), max(eff_suite)], spread_attach=[min(eff_attach), max(eff_attach)])
    report(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

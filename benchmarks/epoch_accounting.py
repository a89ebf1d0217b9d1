"""What `attach --epochs` costs the epochs it accounts, and whether its parts agree with the script's own clocks.

The script is tests/scripts/train_epochs.py (a plain loop: Unet resnet18 at 32 px, validation with a per-pixel
IoU in Python, `torch.save` every epoch), on a generated CamVid-layout set of 24 images, so an epoch is a few
seconds. It logs its own epoch, validation and checkpoint times (`time.perf_counter`).

1. **Cost**: each round runs the script three ways, in an order rotated every round: bare, under `attach
   --keep-running` (attach's hooks, no accounting: its steps after the window run as they do under --epochs)
   and under `attach --epochs 3`. The attached run's accounted epochs are the script's last three; the other
   runs' same epoch indices are their pairs. The ratios of the script's own epoch times (the three epochs' mean a
   round; geometric mean over rounds, a 95% t interval on the paired log ratios): --epochs / --keep-running is
   the accounting's own cost (the hooks on every forward, the stack sampler, the checkpoint wrapper), --epochs /
   bare the whole cost to the user. The sampler's own time, as the record keeps it, is reported beside them.
2. **Agreement**: for every accounted epoch, benchbench's epoch wall, validation part and checkpoint part
   against the script's own timers for the same epoch.

    python benchmarks/epoch_accounting.py --rounds 5 --out benchmarks/results/epoch-accounting-YYYYMMDD.json
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from paired import ratio_interval, report  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "train_epochs.py"
EPOCHS, ACCOUNTED = 9, 3


def _log(path: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"epoch (\d+) (.*)", line)
        if m:
            out[int(m.group(1))] = {k: float(v) for k, v in re.findall(r"(\w+) (\d+\.\d+)", m.group(2))}
    return out


def _run(cmd: list[str], env: dict[str, str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed ({p.returncode}):\n{p.stderr[-3000:]}")


def main() -> int:
    from conftest import make_camvid

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-epochs-"))
    data = make_camvid(tmp / "camvid", n=24)
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    # checkpoints to memory where there is a tmpfs: a disk's write-back makes an epoch's save vary 0.12-0.38 s
    # (measured here), noise the accounting's cost would drown in
    shm = Path("/dev/shm")
    ck = Path(tempfile.mkdtemp(prefix="bb-epochs-ck-", dir=shm)) if shm.is_dir() else tmp / "ck"
    script = [sys.executable, str(SCRIPT), "--data", str(data), "--epochs", str(EPOCHS), "--metric-repeats", "10",
              "--out", str(ck)]
    times: dict[str, list[float]] = {"bare": [], "keep": [], "epochs": []}
    agree: list[dict[str, float]] = []
    sampler: list[float] = []
    load_before = os.getloadavg()
    order = ["bare", "keep", "epochs"]
    attach = [sys.executable, "-m", "benchbench", "attach", "--steps", "3", "--warmup", "2"]
    for r in range(args.rounds):
        logs = {}
        for kind in order[r % 3:] + order[:r % 3]:
            log = tmp / f"{kind}-{r}.log"
            out = ["--results-dir", str(tmp / "res"), "-o", str(tmp / "rep")]
            if kind == "bare":
                _run([*script, "--log", str(log)], env)
            elif kind == "keep":
                _run([*attach, "--keep-running", *out, "--", *script, "--log", str(log)], env)
            else:
                js = tmp / f"rec-{r}.json"
                _run([*attach, "--epochs", str(ACCOUNTED), *out, "--json", str(js), "--", *script, "--log", str(log)],
                     env)
                rec = json.loads(js.read_text())
            logs[kind] = _log(log)
        accounted = sorted(logs["epochs"])[-ACCOUNTED:]
        for kind in order:
            times[kind].append(statistics.fmean(logs[kind][i]["time"] for i in accounted))
        ep = rec["epochs"]
        for i, e in zip(accounted, ep["epochs"], strict=True):
            own, bare = logs["epochs"][i], logs["bare"][i]
            parts = e["parts"]
            agree.append({"epoch": i, "wall_s": e["wall_s"], "own_time_s": own["time"], "bare_time_s": bare["time"],
                          "bare_val_s": bare["val"], "bare_save_s": bare["save"], "bare_train_s": bare["train"],
                          "own_train_s": own["train"],
                          "validation_s": parts["validation_data_wait"] + parts["validation_compute"],
                          "own_val_s": own["val"], "checkpoint_s": parts["checkpoint"], "own_save_s": own["save"],
                          "sum_parts_s": sum(parts.values())})
        sampler.append(ep["sampler"]["cost_s"] / sum(e["wall_s"] for e in ep["epochs"]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.3f}" for k in order), file=sys.stderr)
    # one pair a round (the accounted epochs' mean against the other runs' same epochs): epochs of one process
    # share its state, so they are not independent pairs
    ratio, lo, hi = ratio_interval(times["epochs"], times["keep"])
    ratio_b, lo_b, hi_b = ratio_interval(times["epochs"], times["bare"])
    ratio_k, lo_k, hi_k = ratio_interval(times["keep"], times["bare"])

    def rel(key: str, own: str) -> list[float]:
        return [a[key] / a[own] - 1 for a in agree]

    doc = {
        "what": "the script's own epoch time (the accounted epochs' indices) under attach --epochs, attach "
            "--keep-running and bare",
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "python": sys.version.split()[0]},
        "rounds": args.rounds,
        "epochs_vs_keep_running": {"geomean": ratio, "ci95": [lo, hi]},
        "epochs_vs_bare": {"geomean": ratio_b, "ci95": [lo_b, hi_b]},
        "keep_running_vs_bare": {"geomean": ratio_k, "ci95": [lo_k, hi_k]},
        "round_epoch_s": times,
        # epochs against bare epochs, part by part (three epochs a round: not independent pairs, a guide only)
        "by_part_ratio_vs_bare": {k: ratio_interval([a[f"own_{k}_s"] for a in agree], [a[f"bare_{k}_s"] for a in agree])
                          for k in ("train", "val", "save")},
        "sampler_cost_share": {"median": statistics.median(sampler), "max": max(sampler)},
        "agreement": {
            "wall_vs_own_epoch": {"median": statistics.median(rel("wall_s", "own_time_s")),
                                  "max_abs": max(map(abs, rel("wall_s", "own_time_s")))},
            "validation_vs_own": {"median": statistics.median(rel("validation_s", "own_val_s")),
                                  "max_abs": max(map(abs, rel("validation_s", "own_val_s")))},
            "checkpoint_vs_own": {"median": statistics.median(rel("checkpoint_s", "own_save_s")),
                                  "max_abs": max(map(abs, rel("checkpoint_s", "own_save_s")))},
            "parts_vs_wall_max_abs_s": max(abs(a["sum_parts_s"] - a["wall_s"]) for a in agree),
        },
        "epochs": agree,
        "checkpoints_to": str(ck),
        "date": time.strftime("%Y-%m-%d"),
    }
    import shutil

    shutil.rmtree(ck, ignore_errors=True)
    report(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

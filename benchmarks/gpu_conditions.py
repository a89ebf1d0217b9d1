"""NVML on a real GPU: what its clock-event reasons say under load, what the tracker costs, and whether a
SLURM job's cell sees other processes. The answers the fake NVML of the tests stands in for.

- `soak`: ~8 s of bf16 8192^3 matmuls under the tracker (a sample every 0.2 s): every sample's raw
  clock-event bits, SM clock and power, and benchbench's judgement (a healthy GPU at full load may be
  power-capped — normal — and must not read "throttled");
- `cost`: a host-bound cell (a tiny conv net, batch 1: the host launches, the GPU waits) timed by
  benchbench's own loop in blocks that alternate tracker on / off; the ratio of median block times is the
  tracker's cost (target <= 1.01);
- `slurm-job`: what a SLURM job runs (`runner.slurm.job_main`, calibration included), on one tiny CUDA cell,
  without SLURM: the cell's record must list no other process on its GPU (`other_processes == 0`).

Each case runs in a fresh Python process of its own: a case that touched CUDA leaves a context in its
process for as long as it lives, and NVML lists that process on the GPU — the SLURM job's cell would see it
and be recorded "shared" when nothing is wrong. Each result carries the pid it ran in.

`--device cpu` is the rehearsal: every case's code run on the CPU at the smallest size (no NVML there: the
tracker is absent and said so), the answers recorded, no CUDA answer asserted.

    python benchmarks/gpu_conditions.py --out results/gpu/conditions.json [--cases soak,cost,slurm-job]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchbench.measure.gpu_state import for_cell
from benchbench.measure.timer import synchronizer, timed_loop
from benchbench.measure.trackers import TrackerContext
from benchbench.runner.slurm import job_main
from benchbench.suite import CellParams, cell_id

CASES = ("soak", "cost", "slurm-job")


def _tracker(dev: torch.device) -> Any:
    return for_cell(TrackerContext(dev, {}, torch.get_num_threads()))


def soak(dev: torch.device, seconds: float = 8.0) -> dict[str, Any]:
    n_dim, dtype = (8192, torch.bfloat16) if dev.type == "cuda" else (256, torch.float32)
    sync = synchronizer(dev)
    if dev.type != "cuda":
        seconds = 0.5
    a = torch.randn(n_dim, n_dim, device=dev, dtype=dtype)
    b = torch.randn(n_dim, n_dim, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    t = _tracker(dev)
    if t is None:
        return {"case": "soak", "ok": False, "error": f"no NVML tracker on this {dev.type} machine"}
    n = 0
    with t:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(20):
                a @ b
            sync()
            n += 20
        wall = time.perf_counter() - t0
    r = t.result(n)
    samples = [{"reasons": s["reasons"], "sm_mhz": s["sm_mhz"], "power_w": s["power_w"]} for s in t.samples]
    return {"case": "soak", "tflops": 2 * n_dim**3 * n / wall / 1e12, "samples": samples,
            "judgement": {k: r.get(k) for k in ("throttled", "throttle_reasons", "power_capped", "power_cap_share",
                                                "degrading_share", "reasons_basis", "clock_event_reasons",
                                                "reasons_api", "sm_clock_ratio", "other_processes")},
            "ok": r.get("throttled") is False}


def cost(dev: torch.device, blocks: int = 16, steps: int = 300) -> dict[str, Any]:
    if dev.type != "cuda":
        blocks, steps = 2, 5
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x, y = torch.randn(1, 3, 32, 32, device=dev), torch.randint(0, 3, (1, 32, 32), device=dev)

    def step(a, b):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(a), b)
        loss.backward()
        opt.step()
        return loss.detach()

    walls: dict[str, list[float]] = {"on": [], "off": []}
    timed_loop(itertools.repeat((x, y)), lambda t: t, step, dev, warmup=30 if dev.type == "cuda" else 2,
               steps=100 if dev.type == "cuda" else 5)
    for i in range(2 * blocks):
        side = "on" if i % 2 == 0 else "off"
        t = _tracker(dev) if side == "on" else None
        out = timed_loop(itertools.repeat((x, y)), lambda t: t, step, dev, warmup=0, steps=steps, tracker=t)
        walls[side].append(out.block_wall_s)
    ratio = statistics.median(walls["on"]) / statistics.median(walls["off"])
    pairs = [a / b for a, b in zip(walls["on"], walls["off"])]  # each on block against the off block after it
    slower = sum(r > 1 for r in pairs)
    # one sample's NVML calls, timed alone (the GPU idle) and while the host-bound loop runs in this thread
    t = _tracker(dev)
    sample_ms = []
    if t is not None:
        for _ in range(30):
            t0 = time.perf_counter()
            t._sample()
            sample_ms.append((time.perf_counter() - t0) * 1e3)
    return {"case": "tracker_cost", "block_wall_s": walls, "ratio_on_off": ratio, "pair_ratios": pairs,
            "pairs_slower_on": slower, "sign_test_p": _sign_p(slower, len(pairs)),
            "sample_ms": sorted(sample_ms), "interval_s": getattr(t, "interval_s", None),
            "step_ms_off": statistics.median(walls["off"]) / steps * 1e3, "ok": ratio <= 1.01}


def _sign_p(k: int, n: int) -> float:
    """Two-sided sign test: the chance of k or more of n pairs (or as few) on one side when neither is slower."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5).pvalue) if n else 1.0


def slurm_job(dev: torch.device) -> dict[str, Any]:
    small = dev.type != "cuda"
    params = CellParams(arch="Unet", encoder="resnet18", resolution=32 if small else 128,
                        batch_size=2 if small else 4, warmup=1 if small else 3, steps=3 if small else 10,
                        device=dev.type).model_dump(mode="json")
    payload = {"kind": "cell", "explain": True, "trace_dir": None, "suite": "gpu_check", "run_id": "slurm-job",
               "cell_id": cell_id(params), "label": "Unet resnet18", "params": params, "cwd": os.getcwd()}
    [rec] = job_main([payload])
    cond = rec.get("gpu_conditions") or {}
    return {"case": "slurm_job_other_processes", "status": rec.get("status"), "error": rec.get("error"),
            "other_processes": cond.get("other_processes"), "shared": cond.get("shared"),
            "peak_flops": {k: (v or {}).get("flops_per_s") for k, v in ((rec.get("env") or {}).get("peak_flops")
                                                                       or {}).items()},
            "ok": rec.get("status") == "ok" and cond.get("other_processes") == 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu-conditions.json")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: the rehearsal (every case run on the CPU, answers recorded, none asserted)")
    ap.add_argument("--dry-run", action="store_true", help="check imports and arguments, run nothing")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one case, in this process
    args = ap.parse_args(argv)
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    if args.dry_run:
        print(json.dumps({"dry_run": True, "cases": chosen}))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return 0
    dev = torch.device(args.device)
    if args.in_process:
        [case] = chosen
        runs = {"soak": soak, "cost": cost, "slurm-job": slurm_job}
        try:
            r = runs[case](dev)
        except Exception as exc:
            r = {"case": case, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        r["pid"] = os.getpid()
        if dev.type != "cuda":  # the CPU runs the code, it cannot give NVML's answers: recorded, not asserted
            r["answer_ok"], r["ok"], r["rehearsal"] = r.get("ok"), not r.get("error") or "NVML" in str(r["error"]), True
        Path(args.out).write_text(json.dumps(r, default=str))
        return 0
    results = []
    for case in chosen:  # each case in a fresh process: no CUDA context of one case is seen by the next
        with tempfile.TemporaryDirectory() as tmp:
            one = Path(tmp) / "case.json"
            p = subprocess.run([sys.executable, __file__, "--cases", case, "--device", args.device, "--in-process",
                                "--out", str(one)], check=False, capture_output=True, text=True)
            try:
                results.append(json.loads(one.read_text()))
            except (OSError, ValueError):
                results.append({"case": case, "ok": False, "error": f"the case's process exited {p.returncode}: "
                                + (p.stderr or p.stdout)[-500:]})
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    for r in results:
        print(("ok  " if r.get("ok") else "FAIL") + " " + json.dumps({k: v for k, v in r.items() if k != "samples"},
                                                                     default=str)[:1500])
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

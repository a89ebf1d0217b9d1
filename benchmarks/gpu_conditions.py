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

    python benchmarks/gpu_conditions.py --out results/gpu/conditions.json [--cases soak,cost,slurm-job]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CASES = ("soak", "cost", "slurm-job")


def _tracker() -> Any:
    import torch

    from benchbench.measure.gpu_state import for_cell
    from benchbench.measure.trackers import TrackerContext

    return for_cell(TrackerContext(torch.device("cuda"), {}, torch.get_num_threads()))


def soak(seconds: float = 8.0) -> dict[str, Any]:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = _tracker()
    if t is None:
        return {"case": "soak", "ok": False, "error": "no NVML tracker on this CUDA machine"}
    n = 0
    with t:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(20):
                a @ b
            torch.cuda.synchronize()
            n += 20
        wall = time.perf_counter() - t0
    r = t.result(n)
    samples = [{"reasons": s["reasons"], "sm_mhz": s["sm_mhz"], "power_w": s["power_w"]} for s in t.samples]
    return {"case": "soak", "tflops": 2 * 8192**3 * n / wall / 1e12, "samples": samples,
            "judgement": {k: r.get(k) for k in ("throttled", "throttle_reasons", "power_capped", "power_cap_share",
                                                "degrading_share", "reasons_basis", "clock_event_reasons",
                                                "reasons_api", "sm_clock_ratio", "other_processes")},
            "ok": r.get("throttled") is False}


def cost(blocks: int = 8, steps: int = 300) -> dict[str, Any]:
    import itertools

    import torch

    from benchbench.measure.timer import timed_loop

    dev = torch.device("cuda")
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
    timed_loop(itertools.repeat((x, y)), lambda t: t, step, dev, warmup=30, steps=100)
    for i in range(2 * blocks):
        side = "on" if i % 2 == 0 else "off"
        t = _tracker() if side == "on" else None
        out = timed_loop(itertools.repeat((x, y)), lambda t: t, step, dev, warmup=0, steps=steps, tracker=t)
        walls[side].append(out.block_wall_s)
    ratio = statistics.median(walls["on"]) / statistics.median(walls["off"])
    return {"case": "tracker_cost", "block_wall_s": walls, "ratio_on_off": ratio,
            "step_ms_off": statistics.median(walls["off"]) / steps * 1e3, "ok": ratio <= 1.01}


def slurm_job() -> dict[str, Any]:
    import os

    from benchbench.runner.slurm import job_main
    from benchbench.suite import CellParams, cell_id

    params = CellParams(arch="Unet", encoder="resnet18", resolution=128, batch_size=4, warmup=3, steps=10,
                        device="cuda").model_dump(mode="json")
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
    ap.add_argument("--dry-run", action="store_true", help="check imports and arguments, run nothing")
    args = ap.parse_args(argv)
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    import torch

    from benchbench.measure.gpu_state import for_cell  # noqa: F401 - what the cases import
    from benchbench.runner.slurm import job_main  # noqa: F401

    if args.dry_run:
        print(json.dumps({"dry_run": True, "cases": chosen}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return 0
    runs = {"soak": soak, "cost": cost, "slurm-job": slurm_job}
    results = []
    for case in chosen:
        try:
            results.append(runs[case]())
        except Exception as exc:
            results.append({"case": case, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    for r in results:
        print(("ok  " if r.get("ok") else "FAIL") + " " + json.dumps({k: v for k, v in r.items() if k != "samples"},
                                                                     default=str)[:1500])
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

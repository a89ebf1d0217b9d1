"""Micro-cases with a known answer, on a real GPU: does benchbench count what CUDA does?

Each sync case runs a few steps under torch.profiler, each step inside a `bb.step` range as benchbench's
own profile pass opens them, exports the trace into --out, reads it with benchbench's timeline, and
compares with the answer known from CUDA's semantics:

- `.item()` once per step: 1 host sync per step (a DtoH copy into pinned memory, then one wait);
- a `non_blocking=True` copy into pinned memory, never waited on: 0 syncs;
- fp16 + GradScaler with a plain AdamW: 1 sync per step (found_inf read on the host); with a fused AdamW: 0.

The harness's own `torch.cuda.synchronize()` (so the last step's kernels are in the trace) comes *after*
the last `bb.step` range closes and before the profiler stops: it is outside every step, so it is never
counted as the case's. (An earlier version put it inside the last `ProfilerStep#` range with no `bb.step`
ranges at all: 1 sync per step read as 1.33, 0 as 0.33 — a bug of the check, not of the counter.)

Beside them, cases whose answers the device itself gives:

- the fp32 matmul peak with TF32 off and on (TF32 several times faster on Ampere or later);
- GradScaler's skips: fp16 from the default init scale 2**16 skips a few first steps while the scale
  backs off, then none: the skipped step indices, the final scale, and benchbench's numerics verdict;
- `compile: reduce-overhead` really replays CUDA graphs (`cudaGraphLaunch` in its trace) and its losses
  are finite.

The traces are small; copy them into tests/fixtures to keep the answers as CPU tests. Each case writes its
answers to its own file (`<case>.json` in --out), so a later run of another case never overwrites them.
Skips itself without CUDA; `--device cpu` is the rehearsal: every case's code run on the CPU at the smallest
size (same files, CPU traces), its answers recorded but no CUDA answer asserted. `--dry-run` checks the
imports (all at the top: what the cases import) and arguments only.

    python benchmarks/gpu_micro.py --out results/gpu/micro [--cases syncs,peak,scaler,graphs] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

from benchbench.advise.numerics import verdict
from benchbench.measure.calibrate import calibrate
from benchbench.measure.timer import synchronizer
from benchbench.record import Record
from benchbench.runner.program import measure_inline
from benchbench.suite import CellParams
from benchbench.timeline.gpu import summarize_gpu
from benchbench.timeline.reader import STEP_NAME, read_timeline

STEPS = 3
CASES = ("syncs", "peak", "scaler", "graphs")


def profiled_steps(step: Callable[[], None], sync: Callable[[], None], prof_step: Callable[[], None],
                   steps: int = STEPS) -> None:
    """One untraced warm-up step then `steps` traced ones, each in a `bb.step` range; the harness's sync
    after the last range closes (outside every step), before the profiler collects the trace."""
    for i in range(steps + 1):
        with record_function(STEP_NAME):
            step()
        if i == steps:
            sync()
        prof_step()


def traced(name: str, out: Path, step: Callable[[], None], sync: Callable[[], None] | None = None,
           activities: Sequence[ProfilerActivity] = (ProfilerActivity.CPU, ProfilerActivity.CUDA),
           warmup: int = 3) -> dict[str, Any]:
    sync = sync or torch.cuda.synchronize
    for _ in range(warmup):  # warm-up outside the profiler (cuBLAS handles, allocator)
        step()
    sync()
    sched = schedule(wait=0, warmup=1, active=STEPS, repeat=1)
    with profile(activities=list(activities), schedule=sched) as prof:
        profiled_steps(step, sync, prof.step)
    path = out / f"trace-{name}.json"
    prof.export_chrome_trace(str(path))
    return trace_answer(path)


def trace_answer(path: Path) -> dict[str, Any]:
    tl = read_timeline(path)
    g = summarize_gpu(tl)
    return {"trace": path.name, "steps": g.steps, "step_source": g.step_source,
            "syncs_per_step": sum(s["per_step"] for s in g.host_syncs), "host_syncs": g.host_syncs,
            "kernels_per_step": g.kernels_per_step,
            "graph_launches": sum(1 for c in tl.calls if c.name.startswith(("cudaGraphLaunch", "cuGraphLaunch")))}


def _small_net(dev: torch.device) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(32, 4, 1)).to(dev)


def _activities(dev: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])


def sync_cases(out: Path, dev: torch.device) -> list[dict[str, Any]]:
    n = 1024 if dev.type == "cuda" else 64
    x = torch.randn(n, n, device=dev)
    pinned = torch.empty(n, n, pin_memory=dev.type == "cuda")
    acts, sync = _activities(dev), synchronizer(dev)
    results = []

    def item() -> None:
        (x @ x).sum().item()

    def non_blocking() -> None:
        pinned.copy_(x @ x, non_blocking=True)

    results.append({"case": "item", "expected_syncs_per_step": 1, **traced("item", out, item, sync, acts)})
    results.append({"case": "non_blocking_copy", "expected_syncs_per_step": 0,
                    **traced("non-blocking-copy", out, non_blocking, sync, acts)})
    for fused, expected in ((False, 1), (True, 0)):
        model = _small_net(dev)
        opt = torch.optim.AdamW(model.parameters(), fused=fused)
        scaler = torch.amp.GradScaler(dev.type)
        data = torch.randn(8, 3, 64, 64, device=dev)
        target = torch.randint(0, 4, (8, 64, 64), device=dev)

        def amp_step(model=model, opt=opt, scaler=scaler, data=data, target=target) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.float16):
                loss = torch.nn.functional.cross_entropy(model(data), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        name = f"gradscaler-adamw{'-fused' if fused else ''}"
        results.append({"case": name, "expected_syncs_per_step": expected,
                        **traced(name, out, amp_step, sync, acts)})
    for r in results:
        r["ok"] = math.isclose(r["syncs_per_step"], r["expected_syncs_per_step"]) and r["step_source"] == "bb.step"
    return results


def peak_case(dev: torch.device) -> dict[str, Any]:
    peaks = calibrate(dev.type, ["fp32"])
    tf32 = (peaks.get("tf32") or {}).get("flops_per_s")  # measured on CUDA only (cuDNN's default there)
    ratio = tf32 / peaks["fp32"]["flops_per_s"] if tf32 else None
    return {"case": "tf32_vs_fp32_peak", "fp32_tflops": peaks["fp32"]["flops_per_s"] / 1e12,
            "tf32_tflops": tf32 / 1e12 if tf32 else None, "ratio": ratio, "ok": ratio is not None and ratio > 2,
            "spread": {k: v["spread"] for k, v in peaks.items()}}


def scaler_case(dev: torch.device, steps: int = 40) -> dict[str, Any]:
    """fp16 through benchbench's own TrainStep and timed loop: the skips GradScaler makes while its scale
    backs off from 2**16, where they fall, and the numerics verdict benchbench gives them."""
    small = dev.type != "cuda"

    def rec(amp: str, seed: int = 0) -> Record:
        p = CellParams(arch="Unet", encoder="resnet18", resolution=32 if small else 128, batch_size=2 if small else 8,
                       amp=amp, warmup=1 if small else 3, steps=3 if small else steps, device=dev.type,
                       seed=seed).model_dump(mode="json")
        return measure_inline(p, explain=False)

    base, other, cand = rec("none"), rec("none", 1), rec("fp16")
    if not cand.ok:
        return {"case": "gradscaler_backoff", "ok": False, "error": cand.error}
    gs = cand.training.grad_scaler if cand.training else None
    v = verdict(base, other, cand, "free")
    skipped = (gs.skipped_at if gs else None) or []
    # Expected: skips only while backing off (a prefix of the run), then none; never called divergence.
    prefix = skipped == list(range(len(skipped)))
    return {"case": "gradscaler_backoff", "skipped_at": skipped, "final_scale": gs.final_scale if gs else None,
            "numerics": v, "ok": prefix and v.get("verdict") != "diverges"}


def graphs_case(out: Path, dev: torch.device) -> dict[str, Any]:
    """`compile: reduce-overhead` replays CUDA graphs: cudaGraphLaunch in the trace, finite losses."""
    model = _small_net(dev)
    opt = torch.optim.AdamW(model.parameters())
    data = torch.randn(8, 3, 64, 64, device=dev)
    target = torch.randint(0, 4, (8, 64, 64), device=dev)
    fwd = torch.compile(model, mode="reduce-overhead")
    losses: list[torch.Tensor] = []

    def step() -> None:
        torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(fwd(data), target)
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())

    r = traced("compile-reduce-overhead", out, step, synchronizer(dev), _activities(dev), warmup=5)
    vals = [float(v) for v in torch.stack(losses).cpu()]
    return {"case": "cuda_graphs", **r, "losses_finite": all(math.isfinite(v) for v in vals),
            "ok": r["graph_launches"] > 0 and all(math.isfinite(v) for v in vals)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu-micro")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: the rehearsal (every case run on the CPU, answers recorded, none asserted)")
    ap.add_argument("--dry-run", action="store_true", help="check imports and arguments, run nothing")
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
    rehearsal = dev.type != "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    runs = {"syncs": lambda: sync_cases(out, dev), "peak": lambda: [peak_case(dev)],
            "scaler": lambda: [scaler_case(dev)], "graphs": lambda: [graphs_case(out, dev)]}
    for case in chosen:
        try:
            got = runs[case]()
        except Exception as exc:
            got = [{"case": case, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}]
        for r in got:
            if rehearsal:  # the CPU runs the code, it cannot give CUDA's answers: recorded, not asserted
                r["answer_ok"], r["ok"] = r.get("ok"), "error" not in r
                r["rehearsal"] = True
        results.extend(got)
        (out / f"{case}.json").write_text(json.dumps(got, indent=2, default=str))  # each case its own file
    for r in results:
        print(("ok  " if r["ok"] else "FAIL") + " " + json.dumps({k: v for k, v in r.items() if k != "host_syncs"},
                                                                 default=str))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

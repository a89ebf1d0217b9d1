"""Which knobs to try, and the most each can buy, from the base cell's own measurement.

Every bound is Amdahl's law on a share the base measured: a change that can at best remove (or shrink by a
known factor) a part of the step can at best buy 1 / (1 - share + share / factor). A bound is meant as an upper
bound, not a prediction: the A/B experiment measures what the knob really buys. It holds the rest of the step
fixed, so a knob that also speeds up the rest can beat it (a RAM cache on this CPU: the model and the transforms
ran faster with the decoding gone, and the measured gain came out 5-11% over the bound); the report says so.

- input knobs (workers, pinning, prefetch, persistent workers, a RAM-cached data set): the input stall
  (on a GPU the GPU's idle waiting for batches) can at best vanish: 1 / (1 - f);
- AMP: each kind of work sped up by the most it can be: matmuls (attention included) and convolutions by the
  ratio of the measured peak in the new dtype to the peak of the math mode they ran in (matmuls in IEEE fp32
  by default, `float32_matmul_precision="highest"`; cuDNN convolutions in TF32 by default), memory-bound
  operators by 2x (half the bytes), operator time the breakdown did not list by the largest of these; idle
  and host time not at all. Unbounded where a peak is unknown;
- channels_last: the convolution, normalisation and layout-conversion share can at best vanish;
- compile: the non-matmul (fusable) share and, on a GPU, the idle waiting for launches;
- a fused optimizer: the optimizer phase and the host syncs' idle;
- batch size x2: a step cannot get faster as its work doubles, so at most 2x per image; on a GPU the work
  can at most fill the idle: 1 / (1 - idle);
- decoder_channels C -> C': the decoder's fuse stage scales as C^2 (SegFormer's 1x1 conv over n*C channels),
  the rest of the decoder as C;
- resolution: no bound from one measurement (attention can grow faster than the pixels): measured, and
  labelled as changing the model.

An input stall that comes at epoch boundaries (the prefetch queue drains) is not cured by more workers or
prefetching: those are bounded by the steady wait between boundaries alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.advise.capacity import capacity_bounds
from benchbench.analysis.findings.efficiency import LAYOUT_OPS, _is_matmul, is_conv
from benchbench.record import Record

#: what a knob changes: "free" knobs change how the same math runs; the others change what is trained
KINDS = {
    "num_workers": "free", "pin_memory": "free", "persistent_workers": "free", "prefetch_factor": "free",
    "cache": "free", "amp": "free", "channels_last": "free", "compile": "free", "optimizer": "free",
    "batch_size": "optimisation", "decoder_channels": "model", "resolution": "model",
}
CONV_OR_LAYOUT = ("convolution", "conv2d", "cudnn", "batch_norm", "native_batch_norm") + LAYOUT_OPS


@dataclass
class Candidate:
    knob: str
    frm: Any
    to: Any
    bound: float | None  # the most it can buy (x per image); None: this measurement cannot bound it
    why: str  # what the bound was computed from
    kind: str = "free"
    params: dict[str, Any] = field(default_factory=dict)  # the candidate cell's settings
    skipped: str | None = None  # why it is not measured
    #: the step a capacity model predicts with the knob applied (s): a fixed time, not a share, so the bound
    #: is the base's step over it and moves with whichever base runs it is set against (`rebased`)
    floor_s: float | None = None

    def rebased(self, base_step_s: float | None) -> float | None:
        """The bound against a base step measured elsewhere (the A/B's own base runs): a share's bound does not
        move with the base's step; a predicted step's does, and setting it against the explained run alone
        put a 3.1x cache gain over its 2.95x bound by that one run's noise."""
        if self.floor_s and base_step_s:
            return base_step_s / self.floor_s
        return self.bound

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k not in ("frm", "params")}, "from": self.frm}


def amdahl(share: float, factor: float = math.inf) -> float:
    share = min(max(share, 0.0), 0.999)
    return 1.0 / ((1.0 - share) + (share / factor if math.isfinite(factor) else 0.0))


class Shares:
    """The base's measured shares of its step, on one basis: a GPU's timed step, a CPU's profiled step."""

    def __init__(self, rec: Record) -> None:
        from benchbench.record.explain import Breakdown

        self.m = rec
        self.bd = rec.breakdown or Breakdown()
        self.gpu = rec.gpu
        self.step = rec.median
        self.basis = self.step if self.gpu else (self.bd.step_s or self.step)
        ops = self.bd.top_ops
        self.ops = [(o.name, o.self_time_s) for o in ops]
        self.op_total = self.bd.op_self_total_s or sum(t for _, t in self.ops) or 0.0

    def of(self, seconds: float | None) -> float:
        return (seconds or 0.0) / self.basis if self.basis else 0.0

    def op_share(self, pred: Any) -> float:
        """Share of the step in operators matching pred (op self time scaled to the step)."""
        if not self.op_total:
            return 0.0
        part = sum(t for n, t in self.ops if pred(n)) / self.op_total
        return part * self.of(self.bd.phases_sum_s or self.basis)

    def phase(self, name: str) -> float:
        return self.of(self.bd.phases.get(name))

    def idle(self, cause: str) -> float:
        return self.gpu.idle(cause) / self.step if self.gpu else 0.0

    def module(self, name: str) -> float:
        return self.of(self.bd.module_total(name))

    @property
    def listed(self) -> float:
        """Share of the step in the operators the breakdown lists (the rest of operator time is unlisted)."""
        return self.op_share(lambda n: True)

    @property
    def op_time(self) -> float:
        """Share of the step that is operator time at all (the rest: idle, host overhead between ops)."""
        if not self.op_total:
            return 0.0
        return self.of(self.bd.phases_sum_s or self.basis)

    @property
    def stall(self) -> float:
        return float(self.m.input_stall.fraction or 0.0)

    def stall_shape(self, rec: Record) -> Any:
        from benchbench.analysis.datawait import characterize, steps_per_epoch

        samples = self.m.input_stall.samples
        return characterize(samples, steps_per_epoch(rec)) if samples else None


def _pct(x: float) -> str:
    return f"{x:.0%}"


def applicable_knobs(params: dict[str, Any]) -> set[str]:
    """The knobs that can change this cell at all — known from its settings alone, before anything runs."""
    stub = Record(suite="-", run_id="-", cell_id="-", params=params, status="ok",
                  step_time_s={"samples": [1.0]})  # type: ignore[arg-type]
    return {c.knob for c in candidates(stub)}


def candidates(rec: Record, peaks: dict[str, Any] | None = None) -> list[Candidate]:
    """Each knob changed alone from the base, with its bound and where the bound came from."""
    p = rec.params
    s = Shares(rec)
    cuda = p.get("device") == "cuda"
    out: list[Candidate] = []

    def add(knob: str, to: Any, bound: float | None, why: str, floor_s: float | None = None) -> None:
        frm = p.get(knob) if knob != "cache" else (p["data"].get("cache") or "none")
        if to == frm:
            return
        new = dict(p)
        if knob == "cache":
            new["data"] = {**p["data"], "cache": to}
        else:
            new[knob] = to
        kind = KINDS[knob]
        if knob == "cache" and p["data"]["kind"] == "dataset":
            kind = "data"  # a user data set's items are cached after its transforms: augmentation frozen
            why += "; it caches the data set's items after their random augmentation, which freezes it"
        out.append(Candidate(knob, frm, to, bound, why, kind, new, floor_s=floor_s))

    if p["data"]["kind"] != "synthetic":
        b, why = amdahl(s.stall), f"input stall {_pct(s.stall)} of the step ({s.m.input_stall.basis})"
        steady_b, steady_why = b, why
        shape = s.stall_shape(rec)
        if shape is not None and shape.kind in ("epoch_boundary", "periodic"):
            steady = shape.median_s / s.step if s.step else 0.0
            steady_b = amdahl(steady)
            steady_why = (f"the stall comes at epoch boundaries ({shape.spikes} of {shape.steps} steps); between "
                          f"them it is {shape.median_s * 1e3:.1f} ms ({_pct(steady)} of the step): more workers "
                          "cannot help")
        cap = capacity_bounds(rec)
        if cap.get("num_workers"):
            to, b_w, why_w, floor = cap["num_workers"]
            add("num_workers", to, b_w, why_w, floor)
        elif p.get("num_workers") is not None:  # an attached script's batches may come from no DataLoader
            add("num_workers", max(2, 2 * p["num_workers"]), steady_b, steady_why)
        if (p.get("num_workers") or 0) > 0:
            add("prefetch_factor", 4, steady_b, steady_why)
            if not p.get("persistent_workers", True):
                add("persistent_workers", True, b, why)
        # pin_memory None pins on CUDA already (workload.source.Source): only an explicit False is a knob
        if cuda and p.get("pin_memory") is False:
            add("pin_memory", True, b, why)
        if cap.get("cache"):
            add("cache", "ram", *cap["cache"])
        else:
            add("cache", "ram", b, why)
    if p["amp"] == "none":
        for dt in (("bf16", "fp16") if cuda else ("bf16",)):
            bound, why = amp_bound(s, rec, dt, peaks or {})
            add("amp", dt, bound, why)
    if not p["channels_last"]:
        cl = s.op_share(lambda n: any(k in n.lower() for k in CONV_OR_LAYOUT))
        add("channels_last", True, amdahl(cl), f"convolution, normalisation and layout ops {_pct(cl)} of the step")
    if not p["compile"]:
        fusable = s.op_share(lambda n: not _is_matmul(n)) + s.idle("launch")
        why = f"non-matmul (fusable) ops {_pct(s.op_share(lambda n: not _is_matmul(n)))}" + (
            f" + GPU idle waiting for launches {_pct(s.idle('launch'))}" if cuda else "") + " of the step"
        for mode in ((True, "reduce-overhead") if cuda else (True,)):
            add("compile", mode, amdahl(fusable), why)
    if p.get("optimizer") in ("adamw", "adam"):
        opt = s.phase("optimizer") + s.idle("sync")
        add("optimizer", p["optimizer"] + "-fused", amdahl(opt),
            f"optimizer phase {_pct(s.phase('optimizer'))}" + (f" + host-sync idle {_pct(s.idle('sync'))}" if cuda
                                                                else "") + " of the step")
    idle = s.idle("launch") + s.idle("sync") + s.idle("data_wait")
    add("batch_size", 2 * p["batch_size"], min(2.0, amdahl(idle)) if cuda else 2.0,
        f"GPU idle {_pct(idle)} of the step, which twice the work per step can at most fill" if cuda else
        "twice the work per step in at least the same time: at most 2x per image")
    c = p.get("decoder_channels")
    if c:
        from benchbench.analysis.findings.modules import decoder_width_estimate

        for new in sorted({c // 2, c // 4}, reverse=True):
            est = decoder_width_estimate(rec, c, new) if new >= 16 else None
            if est is None:
                continue
            dec, fuse, bound, estimate = est
            add("decoder_channels", new, bound,
                f"decoder {_pct(dec)} of the step: at most {bound:.2f}x were it to take no time; its fuse "
                f"stage ({_pct(fuse)}) scaling as C^2 and the rest as C estimate {estimate:.2f}x")
    h, w = p.get("resolution") or (0, 0)  # an attached script's input may have shown no image size
    if min(h, w) >= 64:
        nh, nw = (max(32, round(x * 0.75 / 32) * 32) for x in (h, w))
        if (nh, nw) != (h, w):
            r = nh * nw / (h * w)
            add("resolution", [nh, nw], None, f"{r:.2f}x the pixels; no bound from one measurement (attention "
                "can grow faster than the pixels)")
    return out


def amp_bound(s: Shares, rec: Record, dt: str, peaks: dict[str, Any]) -> tuple[float | None, str]:
    """The most autocast to `dt` can buy: each kind of work at its own best case, Amdahl over the step.

    matmuls and attention: peak[dt] / peak of the mode they ran in (fp32 on a GPU unless TF32 matmuls were
    allowed); convolutions: peak[dt] / the convolutions' mode (TF32 where cuDNN allows it); memory-bound
    operators: 2x (16-bit tensors are half the bytes); operator time outside the listed operators: the largest
    of those factors; idle and host time between operators: 1x. A peak not measured leaves its work unbounded.
    """
    cuda = rec.device == "cuda"
    modes = (rec.flops.math_modes if rec.flops else None) or {"convolution": "tf32" if cuda else "fp32",
                                                               "matmul": "fp32"}

    def ratio(kind: str) -> float:
        new = (peaks.get(dt) or {}).get("flops_per_s")
        old = (peaks.get(modes.get(kind, "fp32")) or peaks.get("fp32") or {}).get("flops_per_s")
        return new / old if new and old else math.inf

    conv = s.op_share(is_conv)
    mm = s.op_share(lambda n: _is_matmul(n) and not is_conv(n))
    other = max(s.listed - conv - mm, 0.0)
    unlisted = max(s.op_time - s.listed, 0.0)
    rest = max(1.0 - s.op_time, 0.0)
    r_mm, r_conv = ratio("matmul"), ratio("convolution")
    r_max = max(r_mm, r_conv, 2.0)
    time = mm / r_mm + conv / r_conv + other / 2.0 + unlisted / r_max + rest
    bound = 1.0 / time if time > 0 else math.inf
    def fmt(r):
        return ("unbounded (peak not measured)" if math.isinf(r) else f"{r:.1f}x")
    why = (f"matmul/attention {_pct(mm)} ({modes.get('matmul')} -> {dt}: {fmt(r_mm)}), convolution {_pct(conv)} "
           f"({modes.get('convolution')} -> {dt}: {fmt(r_conv)}), memory-bound ops {_pct(other)} (2x), unlisted "
           f"ops {_pct(unlisted)}, not sped up (idle, host) {_pct(rest)} of the step")
    return (bound if math.isfinite(bound) else None), why

"""`advise --attach`: the knobs that can be set from outside a user's script, each measured A/B against the
unmodified script; the knobs that need its code changed, listed with their bounds and the line to change.

Outside knobs reach the script through the attach hooks, never through its code: DataLoader arguments
(`num_workers`, `pin_memory`, `persistent_workers`, `prefetch_factor`, applied to every DataLoader it builds),
a fused optimizer (`fused=True` where its Adam, AdamW or SGD was built without `fused`/`foreach`), and on CUDA
`torch.backends.cudnn.benchmark` and TF32 matmuls. Runs alternate base and candidate (ABAB... with the order
swapped every pair), each a fresh process of the script with the same fixed warm-up, so the loss trajectories
align step by step; the gate's statistics (`analysis.gate_stats.judge`) give the interval over run medians.

The numerics check compares each candidate's losses with the base's. The script's seed cannot be varied from
outside, so the tolerance is the distance between two base runs, floored at 1% (a deterministic CPU script
repeats itself exactly; a fused optimizer's rounding alone moves the loss by far less than 1%).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from benchbench.advise.numerics import numerics
from benchbench.advise.vary import trained_change
from benchbench.analysis.gate_stats import judge
from benchbench.analysis.trust import runs_warning
from benchbench.record import Record

OUTSIDE_KNOBS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "fused_optimizer",
                 "cudnn_benchmark", "tf32", "val_num_workers", "val_pin_memory", "val_persistent_workers",
                 "ddp_find_unused_parameters", "ddp_gradient_as_bucket_view", "ddp_bucket_cap_mb", "ddp_static_graph")
CODE_KNOBS = ("amp", "channels_last", "compile", "batch_size", "cache", "resolution")
FUSABLE = ("Adam", "AdamW", "SGD")


@dataclass
class Knob:
    name: str
    to: Any
    loader: dict[str, Any] = field(default_factory=dict)
    torch: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    #: the run's step statistic the A/B judges: the median, or the mean where the knob acts on a few steps
    #: (persistent_workers on an epoch's first: the median step never sees it; the epoch's time does), or the
    #: median per image (a variant of the command's own arguments: it may change the batch)
    statistic: str = "median"
    command: list[str] | None = None  # `--vary`: the command with this argument's value
    env: dict[str, str] = field(default_factory=dict)  # `--vary env:NAME=...`: the variable's value
    val_loader: dict[str, Any] = field(default_factory=dict)  # the validation DataLoader's (advise --epochs)


def more_workers(w: int, cuda: bool, cores: int) -> int:
    """The worker count a loader's A/B tries: twice its own (at least 2), on a CPU at most a core short of all
    (the workers compete with the training's own threads there)."""
    return max(2, 2 * w) if cuda else min(max(2, 2 * w), max(cores - 1, 1))


def outside_knobs(rec: Record, cores: int | None = None) -> list[Knob]:
    """The knobs that apply to this script, from what its record says it does."""
    a = rec.attached
    loader = (a.loader if a else None) or {}
    cuda = rec.params.get("device") == "cuda"
    cores = cores or os.cpu_count() or 1
    if rec.distributed is not None:  # every rank has its own loaders: the node's cores are shared between them
        cores = max(1, cores // max(1, rec.distributed.world_size))
    out: list[Knob] = ddp_knobs(rec)
    w = int(loader.get("num_workers") or 0)
    stall = rec.input_stall.fraction or 0.0
    if loader:
        to = more_workers(w, cuda, cores)
        if to != w:
            out.append(Knob("num_workers", to, loader={"num_workers": to},
                            why=f"data wait {stall:.0%} of the step at {w} worker(s)"))
        if w > 0 and not loader.get("persistent_workers"):
            starts = len(a.epoch_start_steps) if a else 0
            out.append(Knob("persistent_workers", True, loader={"persistent_workers": True},
                            why="workers restart every epoch (judged on the mean step: "
                                + (f"{starts} of the base's timed steps started an epoch)" if starts else
                                   "no timed step started an epoch — give --steps more than an epoch's steps)"),
                            statistic="mean"))
        if w > 0 and (loader.get("prefetch_factor") or 2) < 4:
            out.append(Knob("prefetch_factor", 4, loader={"prefetch_factor": 4}, why="a deeper queue per worker"))
        if cuda and not loader.get("pin_memory"):
            out.append(Knob("pin_memory", True, loader={"pin_memory": True}, why="pageable host-to-device copies"))
    if a and a.optimizer in FUSABLE and not a.optimizer_fused:
        share = rec.breakdown.phases.get("optimizer", 0.0) / rec.breakdown.step_s if rec.breakdown and \
            rec.breakdown.step_s else None
        out.append(Knob("fused_optimizer", True, torch={"fused_optimizer": True},
                        why=f"{a.optimizer} without fused/foreach" + (f": optimizer {share:.0%} of the profiled step"
                                                                       if share is not None else "")))
    if cuda:
        out.append(Knob("cudnn_benchmark", True, torch={"cudnn_benchmark": True}, why="cuDNN picks its algorithms "
                        "by timing them once per shape"))
        out.append(Knob("tf32", True, torch={"tf32": True}, why="float32 matmuls in TF32"))
    return out


def ddp_knobs(rec: Record) -> list[Knob]:
    """DistributedDataParallel's own arguments, set from outside in every rank (`attach -- torchrun …`), each
    where what the ranks measured says it may help — and, for the arguments that are only safe on some models,
    where the record shows it safe (every parameter got a gradient in every warm-up and timed step)."""
    d = rec.distributed
    ddp = d.ddp if d is not None else None
    if ddp is None:
        return []
    out = []
    all_used = ddp.unused_params == 0
    if ddp.find_unused_parameters and all_used:
        out.append(Knob("ddp_find_unused_parameters", False, torch={"ddp": {"find_unused_parameters": False}},
                        why=f"every one of the {ddp.params} parameters got a gradient (checked): the search for "
                            "unused ones finds none, each step"))
    if not ddp.gradient_as_bucket_view:
        out.append(Knob("ddp_gradient_as_bucket_view", True, torch={"ddp": {"gradient_as_bucket_view": True}},
                        why="gradients are copied into the all-reduce buckets each step"))
    exposed, step = d.exposed_allreduce_s(), d.median_step_s()
    if exposed and step and ddp.bucket_cap_mb and exposed / step >= 0.05:
        to = max(1.0, ddp.bucket_cap_mb / 4)
        out.append(Knob("ddp_bucket_cap_mb", to, torch={"ddp": {"bucket_cap_mb": to}},
                        why=f"the all-reduce is exposed {exposed * 1e3:.0f} ms a step after the last gradient: "
                            "smaller buckets start it earlier in backward"))
    if not ddp.static_graph and all_used and not ddp.find_unused_parameters:
        out.append(Knob("ddp_static_graph", True, torch={"ddp": {"static_graph": True}},
                        why="the same parameters got gradients in every step observed (static_graph is safe only "
                            "where that holds for the whole run)"))
    return out


def val_loader_knobs(rec: Record, cores: int | None = None) -> list[Knob]:
    """The validation loader's knobs (`advise --attach --epochs`), judged on the whole epoch: where its wait is
    a part of the epoch worth measuring, more workers; where its workers start every validation pass,
    persistent ones; on a GPU, pinned memory."""
    ep = rec.epochs
    vl = (ep.validation_loader if ep else None) or {}
    if ep is None or not ep.whole or not vl:
        return []
    w = int(vl.get("num_workers") or 0)
    wait, wall = ep.part_s("validation_data_wait"), ep.mean_wall_s()
    cores = cores or os.cpu_count() or 1
    out = []
    to = more_workers(w, rec.params.get("device") == "cuda", cores)
    if to != w:
        out.append(Knob("val_num_workers", to, val_loader={"num_workers": to}, statistic="epoch",
                        why=f"the validation loader's wait is {wait:.2f} s of a {wall:.2f} s epoch at {w} worker(s)"))
    if w > 0 and not vl.get("persistent_workers"):
        out.append(Knob("val_persistent_workers", True, val_loader={"persistent_workers": True}, statistic="epoch",
                        why=f"its {w} worker(s) start at every validation pass"))
    if rec.params.get("device") == "cuda" and not vl.get("pin_memory"):
        out.append(Knob("val_pin_memory", True, val_loader={"pin_memory": True}, statistic="epoch",
                        why="pageable host-to-device copies of the validation batches"))
    return out


def code_knobs(rec: Record) -> list[dict[str, Any]]:
    """What needs the script changed: each with its bound from the explanation and the line to change."""
    from benchbench.advise.candidates import candidates

    lines = (rec.attached.lines if rec.attached else None) or {}
    where = {"amp": lines.get("model_forward"), "channels_last": lines.get("model_forward"),
             "compile": lines.get("model_forward"), "batch_size": lines.get("dataloader"),
             "cache": lines.get("dataloader"), "resolution": lines.get("dataloader")}
    change = {"amp": "wrap the forward and loss in torch.autocast", "channels_last":
              "model.to(memory_format=torch.channels_last) and the batch likewise", "compile":
              "model = torch.compile(model)", "batch_size": "the DataLoader's batch_size", "cache":
              "cache decoded samples in the Dataset", "resolution": "the transforms' output size"}
    out = []
    for c in candidates(rec):
        if c.knob in CODE_KNOBS:
            out.append({"knob": c.knob, "to": c.to, "bound": c.bound, "why": c.why, "change": change[c.knob],
                        "where": where.get(c.knob)})
    return out + epoch_code_knobs(rec)


def epoch_code_knobs(rec: Record) -> list[dict[str, Any]]:
    """The whole epoch's code changes (`attach --epochs`), each bounded by the part it can remove from the epoch
    (a factor on the epoch's time: 1 / (1 - saved share)) and the line to change, from the accounting."""
    ep = rec.epochs
    if ep is None or not ep.whole or ep.mean_wall_s() <= 0:
        return []
    wall = ep.mean_wall_s()
    val, metric = ep.validation_s(), ep.metric_s()
    ck = ep.part_s("checkpoint")
    top = next(iter(ep.top_code("validation_compute", 1)), None)
    saves = [w for e in ep.whole for w in e.writes]
    out = []
    for knob, to, saved, why, change, where in (
            ("validate_every", 2, val / 2, f"validation is {val:.2f} s of a {wall:.2f} s epoch",
             "validate every k epochs (Lightning check_val_every_n_epoch, a Trainer's eval_steps)", None),
            ("metric_on_device", True, metric, f"validation code other than the forward: {metric:.2f} s an epoch",
             "accumulate the metric on the device over the batch (a confusion matrix by torch.bincount)",
             top.where if top is not None else None),
            ("checkpoint_every", 2, ck / 2, f"checkpointing is {ck:.2f} s of a {wall:.2f} s epoch",
             "save every k epochs, or from a thread", saves[0].where if saves else None)):
        if saved > 0.01 * wall:
            out.append({"knob": knob, "to": to, "bound": 1 / (1 - min(saved / wall, 0.99)), "why": why,
                        "change": change, "where": where})
    return out


@dataclass
class Result:
    knob: Knob
    base: list[Record] = field(default_factory=list)
    runs: list[Record] = field(default_factory=list)
    verdict: str = "not measured"
    reason: str = ""
    speedup: float | None = None
    interval: tuple[float, float] | None = None
    numerics: dict[str, Any] = field(default_factory=dict)
    trained: dict[str, Any] = field(default_factory=dict)  # what the variant trained differently, as observed

    @property
    def kind(self) -> str:
        return "training change" if self.trained else "outside" if self.knob.command is None and not \
            self.knob.env else "argument"

    def to_json(self) -> dict[str, Any]:
        return {"knob": self.knob.name, "to": self.knob.to, "why": self.knob.why, "verdict": self.verdict,
                "kind": self.kind, "trained_change": {k: list(v) for k, v in self.trained.items()} or None,
                "reason": self.reason, "statistic": self.knob.statistic, "speedup": self.speedup,
                "interval": list(self.interval) if self.interval else None, "numerics": self.numerics,
                "runs": len(self.runs), "base_median_s": [r.median for r in self.base if r.ok],
                "median_s": [r.median for r in self.runs if r.ok], "recommended": self.recommended}

    @property
    def recommended(self) -> bool:
        """Faster with the numerics unchanged; a training change is never recommended on speed alone (it is
        shown as faster per image, for its owner to judge what it does to the model)."""
        return self.verdict == "faster" and self.numerics.get("verdict") == "unchanged"


Runner = Callable[[Any], Record]  # AttachOptions -> the record of one run of the script


def measure_knob(knob: Knob, base_opts: Any, run: Runner, min_runs: int, repeat_max: int, threshold: float) -> Result:
    """Base and candidate alternated until the interval decides (or `repeat_max` runs a side)."""
    res = Result(knob)
    cand_opts = replace(base_opts, loader={**base_opts.loader, **knob.loader}, torch={**base_opts.torch,
                                                                                     **knob.torch},
                        command=knob.command or base_opts.command, env={**base_opts.env, **knob.env},
                        val_loader={**base_opts.val_loader, **knob.val_loader})
    for i in range(repeat_max):
        order = ((base_opts, res.base), (cand_opts, res.runs))
        for opts, into in (order if i % 2 == 0 else order[::-1]):
            rec = run(opts)
            into.append(rec)
            lost = knob.statistic == "epoch" and rec.ok and not (rec.epochs and rec.epochs.run_medians())
            if not rec.ok or lost:
                res.verdict = "failed" if into is res.runs else "base failed"
                res.reason = "the run accounted no whole epoch (the script ended, or --timeout came first)" \
                    if lost else str(rec.error)
                return res
        if i + 1 >= min_runs:
            stat = {"mean": lambda r: float(r.stats["mean"]), "per_image": lambda r: r.per_image_s,
                    "epoch": _epoch_s}.get(knob.statistic, lambda r: r.median)
            j = judge([stat(r) for r in res.base], [stat(r) for r in res.runs], threshold)
            res.verdict, res.reason = j["verdict"], j["reason"]
            if j.get("ratio"):
                res.speedup = 1 / j["ratio"]
                res.interval = (1 / j["ci_high"], 1 / j["ci_low"])
            if res.verdict in ("faster", "slower", "unchanged"):
                break
    res.trained = trained_change(res.base[0], res.runs) if knob.command is not None or knob.env else {}
    if res.trained:  # a different batch (size, precision, model) is a different optimisation: not compared
        what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in res.trained.items())
        res.numerics = {"verdict": "not compared", "why": f"a training change ({what}): judged per image; its "
                        "losses are not the base's to match"}
    else:
        res.numerics = numerics(res.base, res.runs)
    return res


def _epoch_s(r: Record) -> float:
    """A run's median whole epoch (`advise --attach --epochs`); a run that accounted none cannot be judged."""
    return r.epochs.run_medians()[0]  # type: ignore[union-attr] - measure_knob refused a run without one


def degraded_runs(base: Record, results: list[Result]) -> list[str]:
    """The unmodified script's explained run, and each knob's A/B, where a run was taken on a degraded machine."""
    out = [runs_warning("the unmodified script's explained run", [base])]
    out += [runs_warning(r.knob.name, r.base + r.runs) for r in results]
    return [w for w in out if w]

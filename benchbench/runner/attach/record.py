"""The record of an attached run: what the script was seen to do (`_params`), how it ended (`_status`), and
everything measured, as one typed record that `report`, `compare` and `history` read like a suite cell's."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchbench.runner.attach.command import Script, sha256

if TYPE_CHECKING:
    from benchbench.runner.attach.launch import AttachOptions, Outcome

LOADER_KNOBS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")


def attached_cell_id(script: Script, opts: AttachOptions) -> str:
    """Same command, same script contents, same outside knobs: the same cell, night after night."""
    ident = {"command": script.command, "script_sha256": sha256(script.script), "loader": opts.loader or None,
             **({"val_loader": opts.val_loader} if opts.val_loader else {}),
             "device": opts.device, **({"torch": opts.torch} if opts.torch else {}),
             **({"env": opts.env} if opts.env else {})}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def _params(doc: dict[str, Any], opts: AttachOptions, script: Script) -> dict[str, Any]:
    """The record's params: what was observed in the script, and nothing else — a setting the script did not
    show (its learning rate where no optimizer stepped, its classes where the model does not state them, its
    loader where it has no DataLoader) is absent, never a suite cell's default. benchbench's own settings for the
    run (steps, warm-up, timeout, device asked for) are the run's, and say so by their names."""
    model = doc.get("model") or {}
    loader = doc.get("loader") or {}
    shape = model.get("input_shape") or doc.get("batch_shape") or []
    p: dict[str, Any] = {
        "arch": model.get("class") or "unknown", "data": {"kind": "attached"},
        # the images a step trained on; 1 only where no step saw any (the record then has no throughput basis)
        "batch_size": int(doc.get("images_per_step") or doc.get("batch_size") or (shape[0] if shape else 0) or 1),
        "amp": doc.get("amp") if doc.get("amp") in ("fp16", "bf16") else "none",
        "channels_last": bool(model.get("channels_last")), "compile": bool(model.get("compiled")),
        "device": model.get("device") or ("cpu" if opts.device == "cpu" else opts.device),
        "steps": opts.steps, "warmup": int(doc.get("warmup_steps") or 0), "timeout_s": opts.timeout_s,
        "world_size": 1, "loss": "attached",
    }
    if doc.get("optimizer"):
        p["optimizer"] = str(doc["optimizer"]).lower()
    for key in ("lr", "classes", "encoder", "decoder_channels"):
        if model.get(key) is not None:
            p[key] = model[key]
    if len(shape) == 4:
        p["resolution"] = [int(shape[2]), int(shape[3])]
        p["in_channels"] = int(shape[1])
    elif len(shape) == 5:  # a volume (B, C, D, H, W): its slices' size, and its depth
        p["resolution"] = [int(shape[3]), int(shape[4])]
        p["depth"] = int(shape[2])
        p["in_channels"] = int(shape[1])
        p["input_shape"] = [int(x) for x in shape]
    for k in LOADER_KNOBS:
        if k in loader:
            p[k] = loader[k]
    p["command"] = " ".join(script.command)
    return p


def to_record(script: Script, opts: AttachOptions, outcome: Outcome, run_id: str, env: dict[str, Any] | None,
              started_at: str) -> tuple[Any, int]:
    """The record, and benchbench's exit code for it (0 measured, 1 the script failed, 2 refused)."""
    from benchbench.record import Record, base_record, clean_nans

    doc = outcome.doc or {}
    cell = attached_cell_id(script, opts)
    params = _params(doc, opts, script)
    overrides = {**opts.loader, **{k: v for k, v in opts.torch.items() if k != "ddp"},
                 **{f"ddp_{k}": v for k, v in (opts.torch.get("ddp") or {}).items()},
                 **{f"val_{k}": v for k, v in opts.val_loader.items()}}
    label = script.name + "".join(f" {k}={v}" for k, v in sorted(overrides.items()))
    rec = base_record(f"attach-{Path(script.name).stem}", run_id, cell, label, params)
    rec["started_at"] = started_at
    rec["wall_s"] = outcome.wall_s
    rec["env"] = env
    tf = doc.get("timing_fields")
    if tf:
        rec.update(tf)
    elif doc.get("warmup_s"):  # ended in warm-up: its steps are kept, never dropped
        rec["warmup"] = {"steps": len(doc["warmup_s"]), "steady": False, "samples": doc["warmup_s"]}
    model = doc.get("model") or {}
    if model.get("params") is not None:
        rec["params_count"] = int(model["params"])
    if doc.get("losses") is not None:
        losses = doc["losses"]
        rec["training"] = {"losses": losses, "warmup_steps": doc.get("warmup_steps"),
                           "nonfinite": sum(1 for v in losses if v is None or v != v or v in (float("inf"),
                                                                                                 float("-inf")))}
        if doc.get("grad_scaler"):
            rec["training"]["grad_scaler"] = doc["grad_scaler"]
    if doc.get("losses_error"):
        rec.setdefault("explain_errors", {})["losses"] = doc["losses_error"]
    if doc.get("memory"):
        rec["memory"] = doc["memory"]
    if doc.get("breakdown"):
        rec["breakdown"] = doc["breakdown"]
    if doc.get("breakdown_error"):
        rec.setdefault("explain_errors", {})["breakdown"] = doc["breakdown_error"]
    if doc.get("input_stages"):
        rec["input_stages"] = doc["input_stages"]
    if doc.get("epochs"):
        rec["epochs"] = doc["epochs"]
    if doc.get("epochs_error"):
        rec.setdefault("explain_errors", {})["epochs"] = doc["epochs_error"]
    # measure.trackers' results, as run records them
    for k in ("gpu_conditions", "cpu_contention", "trackers", "tracker_errors"):
        if doc.get(k):
            rec[k] = doc[k]
    if doc.get("own_profiler"):
        rec["warnings"] = ["the script's own torch.profiler was recording during the timed steps: its overhead "
                           "(often 1.5-2x on a launch-bound step) is in every figure; run it without its profiler"]
    bps = [b for b in (doc.get("backward_per_step") or []) if b is not None]
    status, error, code, ended = _status(doc, outcome, opts)
    rec["status"], rec["error"] = status, error
    if status != "ok" and rec.get("step_time_s") is None:
        rec.pop("throughput_img_s", None)
    rec["attached"] = {
        "command": script.command, "script": str(script.script) if script.script else None,
        "script_sha256": sha256(script.script), "cwd": os.getcwd(), "model": model.get("class"),
        "model_params": model.get("params"), "optimizer": doc.get("optimizer"),
        "optimizer_fused": doc.get("optimizer_fused"), "steps_seen": int(doc.get("steps_seen") or 0),
        "backward_per_step": (sum(bps) / len(bps)) if bps else None, "grad_scaler": bool(doc.get("scaler")),
        "skipped_steps": int(doc.get("skipped_steps") or 0),
        "other_optimizer_steps": int(doc.get("other_optimizer_steps") or 0), "loader": doc.get("loader"),
        "loader_overrides": overrides or None, "lines": doc.get("lines"),
        "stage_note": doc.get("stage_note"), "window_note": doc.get("window_note"),
        "window_waited": int(doc.get("window_waited") or 0),
        "epoch_start_steps": list(doc.get("epoch_start_steps") or []), "ended": ended,
        "script_error": (f"{doc['error']}" + (f" (at {doc['error_where']})" if doc.get("error_where") else ""))
        if doc.get("error") and doc.get("phase") != "refused" else None,
        "elapsed_s": doc.get("elapsed_s"), "batches_per_step": doc.get("batches_per_step"),
    }
    if outcome.ranks:
        rec["distributed"] = fold_ranks(script, outcome.ranks)
        _job_step(rec, rec["distributed"])
        first = rec["distributed"]["failed_first"]
        if rec["status"] == "ok" and first is not None:  # a rank raised after the others' window
            rec["status"], code = "error", 1
            why = next(r["error"] for r in rec["distributed"]["ranks"] if r["rank"] == first)
            rec["error"] = f"rank {first} raised {why}"
        elif first is not None and rec.get("error"):
            rec["error"] = f"rank {first}: {rec['error']}"
    return Record.of(clean_nans(rec)), code


def _job_step(rec: dict[str, Any], dist: dict[str, Any]) -> None:
    """The job's step, as a suite's DDP cell has it: each step as long as its slowest rank, and every rank's
    batch in it (`params.world_size`; `batch_size` stays one rank's)."""
    from benchbench.record import summarize

    rec["params"]["world_size"] = dist["world_size"]
    steps = [r["step_s"] for r in dist["ranks"]]
    if rec.get("step_time_s") and steps and all(steps) and len({len(s) for s in steps}) == 1:
        slowest = [max(v) for v in zip(*steps, strict=True)]
        rec["step_time_s"] = {**rec["step_time_s"], **summarize(slowest)}
        images = int(rec["params"]["batch_size"]) * dist["world_size"]
        rec["throughput_img_s"] = images / float(rec["step_time_s"]["median"])


def fold_ranks(script: Script, docs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Every rank's document, as `record.ranks.Distributed` keeps it: what each rank measured, how it ended."""
    ranks, ddp = [], None
    raised = {r: (d.get("rank") or {}).get("error_t") or float("inf") for r, d in docs.items()
              if d.get("error") and d.get("phase") != "done"}
    first = min(raised, key=lambda r: (raised[r], r)) if raised else None
    for r, d in docs.items():
        info = d.get("rank") or {}
        tf = d.get("timing_fields") or {}
        gpu = (d.get("breakdown") or {}).get("gpu")
        err = d.get("error")
        ranks.append({
            "rank": r, "local_rank": info.get("local_rank"), "pid": info.get("pid"), "host": info.get("host"),
            # the rank that raised first is the cause; a rank that raised after it had its collective broken
            "status": "ok" if d.get("phase") == "done" else "error" if r == first else "broken" if r in raised
            else "stopped",
            "error": (f"{err}" + (f" (at {d['error_where']})" if d.get("error_where") else "")) if err else None,
            "step_s": ((tf.get("step_time_s") or {}).get("samples")) or [],
            "data_wait_s": ((tf.get("data_wait_s") or {}).get("samples")) or [],
            "clock": info.get("clock"), "clock_note": info.get("clock_note"), "threads": info.get("threads"),
            "cores": info.get("cores"), "workers": (d.get("loader") or {}).get("num_workers"),
            "backend": info.get("backend"), "steps_seen": int(d.get("steps_seen") or 0),
            **{f"gpu_{k}": (gpu or {}).get(k) for k in ("comm_s", "comm_exposed_s", "collectives_s")}})
        ddp = ddp or info.get("ddp")
    world = next((int(d["rank"]["world_size"]) for d in docs.values() if (d.get("rank") or {}).get("world_size")),
                 script.nproc_per_node or len(docs))
    return {"launcher": script.launcher or "torchrun", "world_size": world, "nproc_per_node": script.nproc_per_node,
            "ranks": ranks, "ddp": ddp, "failed_first": first}


def _status(doc: dict[str, Any], o: Outcome, opts: AttachOptions) -> tuple[str, str | None, int, str]:
    phase = doc.get("phase")
    steps = int(doc.get("steps_seen") or (o.progress or {}).get("steps") or 0)
    rc = o.returncode
    how = (f"was stopped when benchbench received {signal.Signals(o.signal).name}" if o.signal else
           f"was stopped after {opts.timeout_s:g} s (--timeout)" if o.timed_out else
           f"was killed by signal {signal.Signals(-rc).name}" if rc is not None and rc < 0 else
           f"exited with code {rc}")
    epochs = [e for e in (doc.get("epochs") or {}).get("epochs") or [] if e.get("whole")]
    if phase == "done":
        if epochs and not opts.keep_running:
            return "ok", None, 0, f"stopped by benchbench after {len(epochs)} epoch(s) accounted"
        if not opts.keep_running:
            return "ok", None, 0, "stopped by benchbench after the profiler window"
        then = f"then {how.removeprefix('was ')}" if o.signal or o.timed_out else "then finished"
        return "ok", None, 0, f"left running (--keep-running), {then}"
    if phase == "refused":
        return "error", str(doc.get("error")), 2, "refused"
    if not doc:
        if o.boot_error:
            return "error", (f"benchbench's hooks could not be installed in the script's Python "
                             f"({o.boot_error}): install benchbench in the environment the script runs in"), 2, \
                "not attached"
        pr = o.progress or {}
        seen = _seen(pr)
        if pr:
            return ("timeout" if o.timed_out else "error"), f"the script {how} before benchbench could record " \
                   f"anything ({seen})", 1, how
        return "error", (f"the script {how} and benchbench's hooks never ran in it: is the command a Python "
                         "program?"), 2, how
    seen = _seen(doc)
    err = doc.get("error")
    raised = f"the script raised {err}" + (f" at {doc['error_where']}" if doc.get("error_where") else "") \
        if err else None
    if phase == "starting" or steps == 0:
        why = (raised + " before its first optimizer step" if raised else
               f"the script {how} without an optimizer step ({seen}): attach times the steps between "
               "optimizer.step() calls")
        return ("timeout" if o.timed_out else "error"), why, 1, how
    wanted = f"{opts.steps} timed steps"
    done = len(((doc.get("timing_fields") or {}).get("step_time_s") or {}).get("samples") or [])
    if phase == "epochs" and done >= opts.steps and not err and (rc == 0 or o.signal or o.timed_out):
        # the timing stands; the epochs accounted are those that ran whole (the one cut short is shown as such)
        return "ok", None, 0, (f"finished with {len(epochs)} epoch(s) accounted" if rc == 0 and not o.timed_out
                               else f"{how.removeprefix('was ')} with {len(epochs)} whole epoch(s) accounted")
    if phase in ("await-window", "profile") and done >= opts.steps and not err and \
            ((rc == 0 and not o.timed_out) or o.signal):
        # the script's training ended (or benchbench was stopped) after the timed steps, before the profiler
        # window did: the timing stands
        return "ok", None, 0, ("finished during the profiler window (no breakdown)" if not o.signal else
                               f"{how.removeprefix('was ')} during the profiler window (no breakdown)")
    why = (raised or f"the script {how}") + f" after {steps} step(s), before warm-up and {wanted} were done " \
        f"({done} timed step(s) kept in this record)"
    return ("timeout" if o.timed_out else "error"), why, 1, how


def _seen(d: dict[str, Any]) -> str:
    return (f"{int(d.get('forward_calls') or d.get('forwards') or 0)} model forward call(s), "
            f"{int(d.get('backward_calls') or d.get('backwards') or 0)} backward call(s), "
            f"{int(d.get('batches') or 0) if 'batches' in d else '?'} batch(es) seen")



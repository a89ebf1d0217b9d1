"""Input pipeline: the shape of the data wait decides the advice."""

from __future__ import annotations

from benchbench.analysis.datawait import characterize, steps_per_epoch
from benchbench.analysis.findings.gpu import _ms
from benchbench.analysis.records import (
    Finding,
    Thresholds,
    effect_text,
    groups_along,
    label,
    ok,
    per_image,
    step_s,
    verifier,
)
from benchbench.record import Record


def data_wait(records: list[Record], t: Thresholds) -> list[Finding]:
    """Input-bound cells, with the shape of the wait deciding the advice."""
    out = []
    for r in ok(records):
        dw = r.input_stall  # on a GPU: its idle while waiting, not the host's wait
        frac = dw.fraction or 0.0
        if frac < t.input_bound_share:
            continue
        host = dw.host_wait
        on_gpu = "GPU" in dw.basis
        host_txt = (f"; the host waited {(host.fraction or 0):.0%} of the step (median "
                    f"{(host.median or 0) * 1e3:.1f} ms), ahead of the GPU for the rest") if on_gpu else ""
        # Older records kept only the median wait: one value, no shape to read.
        samples = dw.samples or ([dw.median] if dw.median is not None else [])
        shape = characterize(samples, steps_per_epoch(r))
        step = step_s(r)
        if shape.kind in ("epoch_boundary", "periodic") and shape.spike_median_s is not None:
            n_steps = len(samples)
            per_epoch = shape.period or shape.steps_per_epoch or 1
            extra = shape.spike_median_s - shape.median_s
            count = (r.params.get("data") or {}).get("count")
            what = (f"every {per_epoch}th step, the first of each epoch"
                    + (f" ({count} images / batch {r.params['batch_size']})" if count else "")
                    if shape.kind == "epoch_boundary" else f"every {per_epoch}th step")
            sentence = (f"{label(r)}: the {'GPU starvation' if on_gpu else 'data wait'} is "
                        f"{shape.median_s * 1e3:.1f} ms on {n_steps - shape.spikes} of "
                        f"{n_steps} steps and {shape.spike_median_s * 1e3:.0f} ms "
                        f"(up to {shape.spike_max_s * 1e3:.0f} ms) "
                        f"on {what}: {shape.spike_share_of_wait:.0%} of all waiting. The DataLoader's prefetch queue "
                        f"drains at each epoch boundary (persistent workers keep their processes, not the queue): "
                        f"{extra * 1e3:.0f} ms per epoch, {extra / (per_epoch * step + extra):.0%} of an epoch's "
                        f"time at {per_epoch} steps per epoch; between boundaries the pipeline keeps up{host_txt}")
            at_1000 = extra / (1000 * step + extra)
            suggestion = (f"not more workers: the steady-state wait is {shape.median_s * 1e3:.1f} ms. A data set with "
                          f"1000 steps per epoch amortises the boundary to {at_1000:.1%} of the time; for a small "
                          "one, iterate across epochs without a drain (a sampler that spans epochs) or generate "
                          "more images (data.count)")
            if shape.kind == "epoch_boundary" and r.params.get("num_workers") and \
                    r.params.get("persistent_workers") is False:
                suggestion = (f"persistent_workers=True first: without it each epoch starts its "
                              f"{r.params['num_workers']} worker(s) again, inside the {extra * 1e3:.0f} ms; then "
                              + suggestion)
            out.append(Finding("input_epoch_boundary", [r.cell_id], sentence,
                               {"data_wait_fraction": frac, **shape.to_dict(), "boundary_cost_s": extra},
                               suggestion))
            continue
        # The first fix that verifies, in the order a user would try them; synthetic data is the
        # ceiling (the model alone), cited apart rather than as a fix.
        verified = next((v for axis in ("num_workers", "pin_memory", "prefetch_factor", "resolution")
                         if (v := verifier(records, r, axis, "any"))), None)
        ceiling = verifier(records, r, "data", "any")
        kinds = {"steady": "every step waits about the same: the workers cannot keep up",
                 "startup": "only the first steps wait: worker start-up",
                 "irregular": f"{shape.spikes} irregular spikes (median {_ms(shape.spike_median_s)})"}
        suggestion = ("more DataLoader workers, cached/pre-decoded data or smaller source images"
                      if shape.kind == "steady" else
                      "persistent_workers and a longer warm-up" if shape.kind == "startup" else
                      "look for contention (other processes, I/O) around the spikes")
        if verified:
            suggestion = (f"{verified['axis']} {verified['from']} -> {verified['to']} measured: "
                          f"{effect_text(verified)}")
        boundary = host.epoch_boundary_s
        if boundary is not None and shape.median_s is not None:
            host_txt += (f"; a new epoch's first batch waits {boundary * 1e3:.1f} ms (measured apart from the timed "
                         f"steps; {host.steps_per_epoch or '?'} steps per epoch here)")
        if ceiling and ceiling["to"].get("kind") == "synthetic":
            suggestion += f" (the model alone, on synthetic data: {ceiling['speedup']:.2f}x)"
        what = "the GPU sits idle waiting for the input pipeline" if on_gpu else "waits for the input pipeline"
        out.append(Finding("input_bound", [r.cell_id],
                           f"{label(r)}: {frac:.0%} of each step {what} "
                           f"(median {shape.median_s * 1e3:.1f} ms, mean {shape.mean_s * 1e3:.1f} ms; "
                           f"{dw.basis}): {kinds.get(shape.kind, shape.kind)}{host_txt}",
                           {"data_wait_fraction": frac, "stall_basis": dw.basis, **shape.to_dict()},
                           suggestion, verified))
    return out


def input_bound(records: list[Record], t: Thresholds) -> list[Finding]:
    out = data_wait(records, t)
    # Workers that change nothing: the job was not input-bound.
    for g in groups_along(records, "num_workers"):
        g = sorted(g, key=lambda r: r.params["num_workers"])
        base = g[0]
        for r in g[1:]:
            speed = per_image(base) / per_image(r)
            if speed < 1.0 and (base.input_stall.fraction or 0) < t.input_bound_share:
                out.append(Finding("input_bound", [r.cell_id, base.cell_id],
                                   f"{label(r)} is {1 / speed:.2f}x slower than {label(base)}: the step was not "
                                   f"input-bound, and worker processes compete with compute threads "
                                   f"for {(r.env.cpu_count if r.env else None) or '?'} CPU cores",
                                   {"speedup": speed}, f"keep num_workers={base.params['num_workers']}"))
                break
    return out


def epoch_starts(records: list[Record], t: Thresholds) -> list[Finding]:
    """An attached script's steps that start an epoch, against its other steps.

    The data wait alone misses most of it: measured on the CamVid loop with 2 workers, the step after the
    workers are forked again took 920 ms against 95 ms, of which 70 ms was the wait — its forward, backward and
    optimizer ran 6-14x slower, the process's pages being copied as it first wrote them after the fork. A
    median hides such a step (one in every epoch); the epoch's time does not."""
    import numpy as np

    out = []
    for r in ok(records):
        a = r.attached
        if a is None or not a.epoch_start_steps or r.step_time_s is None:
            continue
        steps = list(r.step_time_s.samples)
        starts = [i for i in a.epoch_start_steps if i < len(steps)]
        rest = [s for i, s in enumerate(steps) if i not in a.epoch_start_steps]
        if not starts or not rest:
            continue
        start_s, other_s = float(np.median([steps[i] for i in starts])), float(np.median(rest))
        per_epoch = (r.data_wait_s.steps_per_epoch if r.data_wait_s else None) or len(steps)
        excess = start_s - other_s
        share = excess / (per_epoch * other_s + excess) if excess > 0 else 0.0
        if start_s < t.epoch_start_ratio * other_s or share < t.epoch_start_share:
            continue
        waits = list(r.data_wait_s.samples) if r.data_wait_s else []
        wait_s = float(np.median([waits[i] for i in starts if i < len(waits)])) if waits else None
        workers = int(r.params.get("num_workers") or 0)
        forked = workers > 0 and not r.params.get("persistent_workers")
        sentence = (f"{label(r)}: {len(starts)} of {len(steps)} timed steps start an epoch (a DataLoader iterator "
                    f"made again): {start_s * 1e3:.0f} ms against {other_s * 1e3:.1f} ms for the others (medians)"
                    + (f", of which the data wait is {wait_s * 1e3:.1f} ms" if wait_s is not None else "")
                    + f"; at {per_epoch} steps an epoch that is {share:.0%} of the epoch's time, which the median "
                    "step does not show")
        if forked:
            sentence += (f". Without persistent_workers the {workers} worker(s) are forked again each epoch, and "
                         "the training process's first step after a fork runs slower than the rest (its memory "
                         "pages are copied as it first writes them)")
        suggestion = (f"persistent_workers=True (the workers are forked once); `advise --attach --knobs "
                      f"persistent_workers --steps {2 * per_epoch + 1}` measures it on the mean step, its timed "
                      "steps holding two epochs' starts" if forked else
                      "longer epochs amortise it; look at what the script does when an epoch starts")
        out.append(Finding("epoch_start", [r.cell_id], sentence,
                           {"epoch_start_steps": len(starts), "timed_steps": len(steps), "start_step_s": start_s,
                            "other_step_s": other_s, "start_wait_s": wait_s, "steps_per_epoch": per_epoch,
                            "epoch_share": share, "workers_forked_each_epoch": forked}, suggestion))
    return out

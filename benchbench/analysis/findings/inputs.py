"""Input pipeline: the shape of the data wait decides the advice."""

from __future__ import annotations

from benchbench.analysis.datawait import characterize, steps_per_epoch
from benchbench.analysis.findings.gpu import _ms
from benchbench.analysis.records import (
    Finding,
    Thresholds,
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
            what = (f"every {per_epoch}th step, the first of each epoch "
                    f"({(r.params.get('data') or {}).get('count', '?')} images / batch {r.params['batch_size']})"
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
                          f"{verified['speedup']:.2f}x faster per image")
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

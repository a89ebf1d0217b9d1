"""What an attached run writes: one JSON document (the launcher turns it into a record), on every path —
finished, stopped, raised, exited early."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import time
from typing import Any


class Summary:
    """Mixed into `probe.Probe`: its result document, written once."""

    def result(self, partial: bool = False) -> dict[str, Any]:
        """The result document. `partial`: a snapshot while the script runs (`Probe.progress`) — nothing that
        synchronises the GPU: only the steps whose events have completed, and no losses (a run that ends without
        writing its result keeps its timings, not its losses)."""
        from benchbench.record.stats import summarize

        step_s = self.step_s
        if self.phase == "timed" and self.cuda and len(self.events) > 1 and not step_s:
            # inside the timed block: the steps taken so far (at the end, or stopped: all of them)
            with contextlib.suppress(Exception):
                done = _completed(self.events) if partial else self.events
                if not partial:
                    done[-1].synchronize()
                step_s = [a.elapsed_time(b) * 1e-3 for a, b in itertools.pairwise(done)]
            if not partial:
                self.step_s = step_s

        doc: dict[str, Any] = {
            "phase": self.phase, "steps_seen": self.boundaries, "error": self.error, "error_where": self.error_where,
            "stopped_by": self.stopped_by, "own_profiler": bool(getattr(self, "own_profiler", False)),
            "model": self.model_info or None, "batch_size": self._batch_size(),
            "batch_shape": self.batch_shape,
            "backward_calls": self.backward_calls,
            "backward_per_step": self.backward_per_step[1:] or None, "scaler": self.scaler_seen,
            "skipped_steps": self.skipped_steps, "other_optimizer_steps": self.other_optimizer_steps,
            "optimizer": type(self.optimizer).__name__ if self.optimizer is not None else None,
            "optimizer_fused": _fused(self.optimizer), "loader": self._loader(), "amp": _amp_seen(),
            "elapsed_s": time.perf_counter() - self.t_install, "stage_note": self.stage_note,
            "window_note": self.window_note, "window_waited": self.window_waited,
            "epoch_start_steps": self.epoch_start_steps,
            # the model's own forward calls (the module with the most parameters among the outermost ones: a
            # loss module or a torchvision transform is outermost too)
            "forward_calls": self.model_forwards(),
            "batches": sum(self.batches_by_loader.values()),
            "lines": {**self.lines, **({"dataloader": (self._loader() or {}).get("where")}
                                       if (self._loader() or {}).get("where") else {})} or None,
        }
        if step_s and len(step_s) >= 1:
            from benchbench.measure.timer import LoopTiming, read_losses
            from benchbench.runner.program import timing_fields

            lt = LoopTiming(step_s=step_s, data_wait_s=self.wait_s[: len(step_s)], warmup_s=self.warm_s,
                            steady=self.steady, clock="cuda-events" if self.cuda else "perf_counter",
                            enqueue_s=self.enqueue_s[: len(step_s)], block_wall_s=self.block_wall_s,
                            starved_s=getattr(self, "starved_s", []))
            doc["batches_per_step"] = self._batches_a_step()
            doc["images_per_step"] = self._images_a_step()
            doc["timing_fields"] = timing_fields(lt, doc["images_per_step"])
            if self.steps_per_epoch and doc["timing_fields"].get("data_wait_s") is not None:
                doc["timing_fields"]["data_wait_s"]["steps_per_epoch"] = self.steps_per_epoch
            doc["warmup_steps"] = len(self.warm_s)
            doc["losses"] = []  # a snapshot reads none: on a GPU a read synchronises it, and a snapshot stays cheap
            if not partial:
                try:  # never lose the timings for a loss read
                    flat = [sum(ls) / len(ls) if ls else None for ls in self.losses]
                    kept = [x for x in flat if x is not None]
                    vals = read_losses(kept) if kept else []
                    doc["losses"] = vals if len(vals) == len(flat) else []
                except Exception as exc:
                    doc["losses_error"] = f"{type(exc).__name__}: {exc}"[:300]
        elif self.warm_s:
            doc["warmup_s"] = summarize(self.warm_s)["samples"]
        if self.scaler is not None:
            doc["grad_scaler"] = _scaler_state(self.scaler, self.skipped_at, len(self.losses), read_scale=not partial)
        doc["memory"] = self._memory()
        for k, v in (getattr(self, "tracked", None) or {}).items():  # measure.trackers' results
            if v:
                doc[k] = v
        if self.breakdown is not None:
            doc["breakdown"] = self.breakdown
        if self.breakdown_error:
            doc["breakdown_error"] = self.breakdown_error
        if self.ledger is not None:
            doc["epochs"] = self.epoch_doc(final=not partial)
        if getattr(self, "epochs_error", None):
            doc["epochs_error"] = self.epochs_error
        if getattr(self, "rank_clock", None) is not None:  # one of torchrun's ranks (`ranks.RankClock`)
            doc["rank"] = self.rank_clock.doc()
        stages = getattr(self, "stages_read", {})
        if stages:
            best = max(stages, key=lambda k: self.batches_by_loader.get(k, 0))
            doc["input_stages"] = stages[best]
        return doc

    def _images_a_step(self) -> int:
        """Images a step trained on, in this order of evidence:

        - the training loader's own `batch_size` (the loader that fed the most batches) times the batches a step
          fetched — never the first batch's leading dimension, which a validation loader used first, or a
          collate returning a list of samples, gets wrong; and a GAN's discriminator sees its real batch and the
          generator's fakes, but trains on one batch a step;
        - where no loader with a batch size fed the steps (a loop slicing its own tensors, a trainer's own
          augmenter): what the model's training calls were given (median over the timed steps);
        - else the batches a step fetched times the first batch's size."""
        loader_bs = (self._loader() or {}).get("batch_size")
        if loader_bs and self.batches_per_step and self._batches_a_step() >= 1:
            return int(loader_bs) * self._batches_a_step()
        per = sorted(n for n in self.images_per_step if n)
        if per:
            return per[len(per) // 2]
        return (self.batch_size or 1) * max(1, self._batches_a_step())

    def _batch_size(self) -> int | None:
        """A batch's images, by the same evidence as `_images_a_step`."""
        return (self._loader() or {}).get("batch_size") or self.model_batch or self.batch_size

    def _loader(self) -> dict[str, Any] | None:
        if not self.batches_by_loader:
            return None
        key = max(self.batches_by_loader, key=lambda k: self.batches_by_loader[k])
        return self.loaders.get(key)

    def _memory(self) -> dict[str, Any]:
        """Peak memory of the model's GPU (not the current device's) over the timed steps: the peak is reset
        as they begin (`Timing._begin_timed`), so loading, validation and cuDNN's benchmark workspaces before
        them are not in it, and read as they end (before the profiler window). A script that ended before its
        timed steps has only the whole run's peak, and says so."""
        mem: dict[str, Any] = {"peak_rss_bytes": _rss()}
        if getattr(self, "cuda_peak", None):
            mem.update(self.cuda_peak)
        elif self.cuda:
            mem.update(_cuda_peak(self.device), basis="CUDA peak of the whole run (it ended before its timed steps)")
        return mem

    def at_exit(self) -> None:
        """The script's interpreter is exiting (it finished, or raised): an open profiler window is closed
        first, then the result written."""
        if not self.written:
            with contextlib.suppress(Exception):
                self.abandon_window()
            with contextlib.suppress(Exception):
                self.stop_epoch_hooks()
        self.write()

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        try:
            doc = self.result()
        except Exception as exc:  # never lose the run to a fault in the summary
            doc = {"phase": self.phase, "steps_seen": self.boundaries,
                   "error": f"benchbench could not summarise the run: {type(exc).__name__}: {exc}"}
        write_json(self.out, doc)

    def finish(self) -> None:
        if self.epochs_wanted() and not self.epochs_over and self.phase != "epochs":
            try:  # --epochs: the script runs on, its epochs accounted (`epoch_phase.EpochPhase`)
                self.begin_epochs()
                return
            except Exception as exc:
                self.epochs_error = f"{type(exc).__name__}: {exc}"[:300]
                with contextlib.suppress(Exception):
                    self.stop_epoch_hooks()
        self.phase = "done"
        self.write()
        if not self.cfg.get("keep_running"):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # the script stops here: its workers are ended by the launcher (its process group)

    def fail_refused(self, why: str) -> None:
        self.error = why
        self.phase = "refused"
        self.write()
        sys.stderr.write(f"benchbench attach: {why}\n")
        sys.stderr.flush()
        os._exit(3)



def _distributed() -> bool:
    with contextlib.suppress(Exception):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return True
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _fused(opt: Any) -> bool | None:
    if opt is None:
        return None
    d = getattr(opt, "defaults", {}) or {}
    return bool(d.get("fused")) if "fused" in d else None


_AMP: dict[str, Any] = {}


def _amp_seen() -> str:
    return _AMP.get("dtype", "none")


def _completed(events: list[Any]) -> list[Any]:
    """The leading events that have completed on the GPU (`query()`: no sync)."""
    n = 0
    for ev in events:
        if not ev.query():
            break
        n += 1
    return events[:n]


def _cuda_peak(device: Any) -> dict[str, int]:
    import torch

    return {"cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "cuda_peak_reserved_bytes": torch.cuda.max_memory_reserved(device)}


def _scaler_state(scaler: Any, skipped_at: list[int], steps: int, read_scale: bool = True) -> dict[str, Any]:
    """GradScaler's state for the numerics check: the steps it skipped (indices into the recorded losses, so runs
    align step by step) and its scale — read only at the end (`read_scale`): on a GPU `get_scale()` is a sync."""
    out: dict[str, Any] = {"skipped_steps": len(skipped_at), "skipped_at": list(skipped_at), "steps": steps}
    with contextlib.suppress(Exception):
        out["init_scale"] = float(scaler._init_scale)
        if read_scale:
            out["final_scale"] = float(scaler.get_scale())
    return out


def write_json(path: str, doc: dict[str, Any]) -> None:
    """A document written whole or not at all (through a temporary beside it, renamed over it): the launcher
    never reads half of one, however the script ends."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, default=str)
    os.replace(tmp, path)


def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024



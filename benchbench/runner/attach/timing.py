"""The clocks of an attached run, as `run`'s timed loop keeps them: warm-up until steady, then the timed
block; on a GPU a CUDA event at each step boundary and one sync per block (and per three warm-up steps)."""

from __future__ import annotations

import time
from typing import Any

from benchbench.runner.attach.ranks import sibling_groups
from benchbench.runner.attach.summary import _cuda_peak


class Timing:
    """Mixed into `probe.Probe`."""

    def _event(self) -> Any:
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def _warmup_step(self, now: float) -> None:
        """A warm-up step's end, on the one warm-up rule `run`'s timed loop follows (`measure.timer.WarmupRule`):
        the hooks drive it at each optimizer step as `timed_loop` drives it after each step it calls."""
        from benchbench.measure.timer import WarmupRule

        rule = WarmupRule(self.cuda, self.warmup_max)
        self.losses.append(self.loss_now)
        self.loss_now = []
        if self.cuda:
            self.events.append(self._event())
            n = len(self.events) - 1
            if rule.read_now(n):
                self.events[-1].synchronize()  # one sync per block of warm-up steps, never per step
                self.warm_s = [a.elapsed_time(b) * 1e-3 for a, b in zip(self.events, self.events[1:], strict=False)]
        else:
            self.warm_s.append(now - (self.t_last or now))
        self.t_last = now
        n = len(self.warm_s) if not self.cuda else len(self.events) - 1
        steady = self.warmup_auto and rule.steady(self.warm_s) and len(self.warm_s) == n
        if steady or rule.over(n):
            self.steady = bool(steady)
            self._begin_timed(now)
        else:
            self.progress("warm-up", force=False)

    def _begin_timed(self, now: float) -> None:
        self.phase = "timed"
        self.own_profiler = _profiler_running()
        # by the profile itself: an iterator's id is reused by the next one made (another loader's, perhaps)
        self.before_stages = {id(p): p.snapshot() for p in self.stage_profiles.values()}
        self.block_t0 = now
        self.t_last = now
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            # the peak of the timed steps alone, on the model's own GPU
            torch.cuda.reset_peak_memory_stats(self.device)
        self.trackers = _enter_trackers(self.device, int((self._loader() or {}).get("num_workers") or 0),
                                        sibling_groups(self.out) if self.cfg.get("rank") else [])
        if self.cuda:
            self.block_t0 = time.perf_counter()
            self.events = [self._event()]
            self.entered, self.ready = [], []
        self.progress("timed steps")

    def _timed_step(self, now: float) -> None:
        if self.iter_in_step:  # this step made a DataLoader iterator: an epoch's start (or a validation pass)
            self.epoch_start_steps.append(len(self.wait_s))
        self.losses.append(self.loss_now)
        self.loss_now = []
        self.wait_s.append(self.wait_in_step)
        if self.cuda:
            self.events.append(self._event())
            self.enqueue_s.append(now - (self.t_last or now))
        else:
            self.step_s.append(now - (self.t_last or now))
        self.t_last = now
        if len(self.wait_s) >= self.steps_wanted:
            self._end_timed()

    def _end_timed(self) -> None:
        if self.cuda:
            self.events[-1].synchronize()
            self.block_wall_s = time.perf_counter() - (self.block_t0 or 0.0)
            self.step_s = [a.elapsed_time(b) * 1e-3 for a, b in zip(self.events, self.events[1:], strict=False)]
            # the GPU's idle while the host waited for the step's first batch: elapsed(wait began, batch there),
            # measured across the wait itself (not from the step's end: work queued after optimizer.step() is
            # the GPU busy, not starved)
            self.starved_s = [max(0.0, a.elapsed_time(b) * 1e-3) for a, b in
                              zip(self.entered, self.ready, strict=False)] \
                if len(self.ready) >= len(self.step_s) else []
            self.cuda_peak = {**_cuda_peak(self.device), "basis": "CUDA peak of the timed steps (reset as they began)"}
        else:
            self.block_wall_s = sum(self.step_s)
            self.starved_s = []
        self.stages_read = {k: p.read(since=self.before_stages.get(id(p))) for k, p in self.stage_profiles.items()}
        got = self._training_iterator()
        if got is not None and got[0] >= got[1]:  # where epochs turn: the data wait's shape is read against it
            self.steps_per_epoch = max(1, got[0] // max(1, self._batches_a_step()))
        images = self._images_a_step() * len(self.step_s)
        self.tracked = _exit_trackers(self.trackers, images)
        self.trackers = None
        if self.profile_steps > 0:
            self._window_or_wait()
        else:
            self.finish()



def _enter_trackers(device: Any, workers: int, own_groups: list[int]) -> Any:
    """The trackers `run` enters around a cell's timed block (`measure.trackers.TRACKERS`: the GPU's conditions
    from NVML, other processes on the cores, ...), entered around the script's timed steps — every one that
    applies, so a tracker added there is an attached run's too. The script's input stages are read by attach
    itself, from every loader it swapped (no `Source` here)."""
    import torch

    from benchbench.measure.trackers import TRACKERS, TrackerContext, Trackers

    registry = {k: v for k, v in TRACKERS.items() if k != "input_stages"}
    t = Trackers(TrackerContext(device or torch.device("cpu"), {"num_workers": workers, "own_groups": own_groups},
                                torch.get_num_threads()), registry)
    try:
        t.__enter__()
    except Exception as exc:  # a tracker that cannot start never stops the script
        t.errors["enter"] = f"{type(exc).__name__}: {exc}"[:300]
    return t


def _exit_trackers(t: Any, images: int) -> dict[str, Any]:
    """Close and read them: {record field: result} (and `tracker_errors`), never raising into the script."""
    if t is None:
        return {}
    try:
        t.__exit__(None, None, None)
        return t.results(images)
    except Exception as exc:
        return {"tracker_errors": {**t.errors, "exit": f"{type(exc).__name__}: {exc}"[:300]}}


def _profiler_running() -> bool:
    """Whether a torch profiler (the script's own: benchbench's window comes after the timed steps) is recording
    as the timed steps begin: its overhead is then in them."""
    try:
        import torch

        return bool(torch._C._autograd._profiler_enabled())
    except Exception:
        return False

"""The profiler window of an attached run: a few steps after the timed ones, under torch.profiler (a warm-up step,
no Python stacks; on a GPU with host syncs a second window with stacks names their lines); the phases come from the
hooks (forward from the model's own hooks, backward, optimizer, data wait),
the modules from the model's top-level children, and the breakdown from the exported trace as `run` reads it."""

from __future__ import annotations

import os
from typing import Any

from benchbench.measure.profile import _quiet_kineto


def _modules(model: Any, of_interest: Any) -> dict[str, Any]:
    """The model's parts to time: its top-level children, and the layers of a layer list among them (a script's
    model may call `for m in self.model: x = m(x)`, as Ultralytics' does, never the list itself)."""
    from torch import nn

    from benchbench.runner.attach.model import unwrap

    out = dict(of_interest(unwrap(model)))  # a DDP model's parts are its module's (DDP has one child: `module`)
    for name, child in list(out.items()):
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 4:
            for i, sub in enumerate(child):
                out[f"{name}.{i} {type(sub).__name__}"] = sub
    return out


class Window:
    """Mixed into `probe.Probe`: the profiler window's state lives on the probe.

    The window is two steps: one that starts a DataLoader iterator (a new epoch forking its workers again, a
    validation pass at the epoch's end) would be half of it and explain the script as input-bound. So where the
    training iterator has fewer batches left than the window needs, the window waits for the epoch to turn and
    profiles the new epoch's second and later steps; an epoch shorter than the window is said in the record."""

    def _training_iterator(self) -> tuple[int, int] | None:
        """(length, batches yielded) of the training DataLoader's current iterator, or None where it has no
        length. Asked at a step's end: the last batch fetched was the step's own, so its iterator is the
        training one."""
        ref = self.iter_refs.get(self.last_iter) if self.last_iter is not None else None
        it = ref() if ref is not None else None
        try:
            return len(it), int(it._num_yielded)  # type: ignore[arg-type, union-attr]
        except (TypeError, AttributeError):  # an IterableDataset without __len__, a gone iterator
            return None

    def _batches_left(self) -> int | None:
        """Batches the training iterator has still to yield (None: unknown)."""
        got = self._training_iterator()
        if got is None:
            return None
        left = got[0] - got[1]
        # an iterator read past its length (Ultralytics' InfiniteDataLoader repeats one iterator forever)
        return left if left >= 0 else None

    def _batches_a_step(self) -> int:
        """Batches a step fetched (the median over the timed steps; > 1 with gradient accumulation; 1 before)."""
        per = sorted(self.batches_per_step)
        return per[len(per) // 2] if per else 1

    def _window_or_wait(self) -> None:
        per = max(1, self._batches_a_step())
        left = self._batches_left()
        if left is not None and left < (1 + self.profile_steps) * per:  # the profiler's warm-up step, then its own
            self.phase = "await-window"
            self.window_wait = left // per + 2  # this epoch's last steps, then the next one's first
            return
        self._begin_profile()

    def _await_window_step(self) -> None:
        self.window_waited += 1
        if self.iter_in_step or self.window_waited >= self.window_wait:
            self._begin_profile()  # the step that started the new epoch has ended: the next ones are steady

    def _begin_profile(self, lines: bool = False) -> None:
        """Start a profiler window: one warm-up step (the profiler's own start-up and lazy initialisation are not
        in the trace; torch warns that a window without one is skewed), then `profile_steps` recorded ones.

        The first window has no Python stacks: tracing every Python call slows the host and would move GPU idle
        time from "sync" to "launch", so every figure comes from it. Where it finds host syncs on a GPU, a second
        window (`lines`) with stacks names the script's line of each (and nothing else is read from it)."""
        import tempfile

        from torch.profiler import ProfilerActivity, profile, schedule

        from benchbench.timeline.syncs import HARNESS_SYNCS_META, HARNESS_SYNCS_OUTSIDE

        self.phase = "profile"
        self.prof_lines = lines
        self.prof_warm = 1
        self.prof_steps = 0
        if not hasattr(self, "_tmp"):
            self._tmp = tempfile.TemporaryDirectory(prefix="bb-attach-")
        if lines:
            path = os.path.join(self._tmp.name, "trace-lines.json")
        elif self.cfg.get("trace_dir"):
            os.makedirs(self.cfg["trace_dir"], exist_ok=True)
            rank = (self.cfg.get("rank") or {}).get("rank")  # a DDP job: a trace a rank, side by side
            path = os.path.join(self.cfg["trace_dir"], f"{self.cfg.get('cell_id', 'attached')}"
                                + (f".rank{rank}" if rank is not None else "") + ".json")
        else:
            path = os.path.join(self._tmp.name, "trace.json")
        self.window_path = path
        if not lines:
            self.trace_path = path
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        try:
            if not lines:
                self._hook_model()
            self.prof = profile(activities=acts, record_shapes=False, with_stack=lines,
                                schedule=schedule(wait=0, warmup=1, active=self.profile_steps, repeat=1))
            with _quiet_kineto():
                self.prof.__enter__()
            # benchbench syncs nowhere inside a step: every sync in one is the script's (`timeline.gpu`)
            self.prof.add_metadata(HARNESS_SYNCS_META, HARNESS_SYNCS_OUTSIDE)
            self._open_step()
        except Exception as exc:
            self.breakdown_error = f"{type(exc).__name__}: {exc}"
            self._stop_profiler(read=False)
            self._unhook_model()
            self.finish()

    def _add_note(self, text: str) -> None:
        self.window_note = f"{self.window_note}; {text}" if self.window_note else text

    def _hook_model(self) -> None:
        """The model's phase and module ranges. None on a compiled model (`torch.compile(model)` or an in-place
        `model.compile()`): a hook added to its modules would recompile it inside the window, and its forward is
        then counted with the loss."""
        from benchbench.measure.profile import ModuleRanges, modules_of_interest

        self.model_hooks = []
        if self.model is None:
            return
        if self.model_info.get("compiled"):
            self._add_note("the model is compiled: no hooks on its modules in the window (they would recompile it), "
                           "so the breakdown has no per-module times and its forward is counted with the loss")
            return
        self.module_ranges = ModuleRanges(_modules(self.model, modules_of_interest))
        self.model_hooks = [
            self.model.register_forward_pre_hook(lambda m, a: self.open_phase("forward")),
            self.model.register_forward_hook(lambda m, a, o: self.close_phase("forward"), always_call=True)]

    def _unhook_model(self) -> None:
        for h in self.model_hooks:
            h.remove()
        self.model_hooks = []
        if self.module_ranges is not None:
            self.module_ranges.remove()
            self.module_ranges = None

    def _open_step(self) -> None:
        from torch.autograd.profiler import record_function

        from benchbench.timeline.reader import STEP_NAME

        rf = record_function(STEP_NAME)
        rf.__enter__()
        self.prof_ranges.append(rf)

    def open_phase(self, name: str) -> None:
        """Phases follow each other, never nest: opening one closes the one open. (Lightning calls forward and
        backward inside `optimizer.step(closure)`: the optimizer's pre-hook fires first, its phase is closed by
        the forward and reopened when backward ends, so no time is counted twice.)"""
        if self.phase != "profile":
            return
        from torch.autograd.profiler import record_function

        from benchbench.timeline.reader import PHASE_PREFIX

        if self.phase_stack and self.phase_stack[-1][0] == name:
            return  # already in it (a nested forward of the model)
        self._close_all_phases()
        rf = record_function(PHASE_PREFIX + name)
        rf.__enter__()
        self.phase_stack.append((name, rf))

    def close_phase(self, name: str) -> None:
        if self.phase != "profile" or not self.phase_stack or self.phase_stack[-1][0] != name:
            return
        self.phase_stack.pop()[1].__exit__(None, None, None)
        # what follows the model's output until backward is the loss (and whatever the script does there); what
        # follows backward until the step, the optimizer (with clipping, zero_grad, the scaler's unscale)
        nxt = {"forward": "loss", "backward": "optimizer"}.get(name)
        if nxt:
            self.open_phase(nxt)

    def _close_all_phases(self) -> None:
        while self.phase_stack:
            self.phase_stack.pop()[1].__exit__(None, None, None)

    def _profile_step(self) -> None:
        self._close_all_phases()
        if self.prof_ranges:
            self.prof_ranges.pop().__exit__(None, None, None)
        if self.prof is not None:
            self.prof.step()
        if self.prof_warm:  # the profiler's warm-up step: not recorded
            self.prof_warm -= 1
            self._open_step()
            return
        if self.iter_in_step and not self.prof_lines:
            self.window_note = ("the profiler window holds a step that started a DataLoader iterator (an epoch's "
                                "start or a validation pass: the epoch is shorter than the window"
                                + (f", which waited {self.window_waited} step(s) for it" if self.window_waited
                                   else "") + "): the breakdown includes its start; the timed steps are unaffected")
        self.prof_steps += 1
        if self.prof_steps < self.profile_steps:
            self._open_step()
            return
        self._stop_profiler()
        syncs = ((self.breakdown or {}).get("gpu") or {}).get("host_syncs") or []
        if not self.prof_lines and self.cuda and syncs:
            self._begin_profile(lines=True)  # name the syncs' lines in a window of their own
            return
        self._unhook_model()
        self.finish()

    def abandon_window(self) -> None:
        """The script is exiting inside the window: stop the profiler without reading it (an incomplete window
        is no breakdown). A profiler still running at interpreter exit crashes the process (SIGSEGV, measured
        here with torch 2.14's profiler and Python stacks on)."""
        if self.prof is not None:
            self._stop_profiler(read=False)
        self._unhook_model()

    def _stop_profiler(self, read: bool = True) -> None:
        """The window's ranges closed, the profiler stopped; its trace exported and read (the breakdown, or the
        syncs' lines for the second window) unless `read` is False."""
        import torch

        self._close_all_phases()
        while self.prof_ranges:
            self.prof_ranges.pop().__exit__(None, None, None)
        if self.prof is None:
            return
        prof, self.prof = self.prof, None
        try:
            if self.cuda and read:
                torch.cuda.synchronize(self.device)  # outside every step: the last one's kernels in the trace
            with _quiet_kineto():
                prof.__exit__(None, None, None)
            if read:
                prof.export_chrome_trace(self.window_path)
                if self.prof_lines:
                    self._name_sync_lines()
                else:
                    self._breakdown()
        except Exception as exc:
            if self.prof_lines:
                self._add_note(f"the host syncs' lines could not be read ({type(exc).__name__}: {exc})")
            else:
                self.breakdown_error = f"{type(exc).__name__}: {exc}"

    def _name_sync_lines(self) -> None:
        """The script's line of each host sync, from the second window's Python stacks: matched to the first
        window's syncs by op, phase, call and kind."""
        from collections import Counter

        from benchbench.timeline.gpu import summarize_gpu
        from benchbench.timeline.reader import read_timeline

        seen: dict[tuple[Any, ...], Counter[str]] = {}
        for s in summarize_gpu(read_timeline(self.window_path)).host_syncs:
            if s.get("where"):
                key = (s["op"], s["phase"], s["call"], s.get("kind"))
                seen.setdefault(key, Counter())[s["where"]] += s["per_step"]
        gpu = (self.breakdown or {}).get("gpu") or {}
        for s in gpu.get("host_syncs") or []:
            got = seen.get((s["op"], s["phase"], s["call"], s.get("kind")))
            if got and not s.get("where"):
                s["where"] = got.most_common(1)[0][0]
        gpu["sync_lines_basis"] = (f"named from a second window of {self.profile_steps} step(s) with Python stacks; "
                                   "every figure is from the first, without them")

    def _breakdown(self) -> None:
        import numpy as np

        from benchbench.measure.profile import gpu_breakdown
        from benchbench.timeline.host import host_breakdown
        from benchbench.timeline.reader import read_timeline

        steps = max(1, self.prof_steps)
        if self.cuda:
            stall = float(np.median(self.starved_s)) if self.starved_s else None
            self.breakdown = gpu_breakdown(self.trace_path, steps, float(np.median(self.step_s)), stall)
        else:
            self.breakdown = host_breakdown(read_timeline(self.trace_path), steps)
        if self.cfg.get("trace_dir"):
            self.breakdown["trace"] = self.trace_path


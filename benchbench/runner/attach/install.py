"""Putting the hooks in place, before the script's first line (`boot/sitecustomize.py` calls `install`)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import sys
import time
import traceback
from typing import Any

from benchbench.runner.attach.frames import call_site, is_user_file
from benchbench.runner.attach.knobs import _override, _torch_settings, val_loader_settings
from benchbench.runner.attach.probe import Probe
from benchbench.runner.attach.ranks import RANKS_ENV, RankClock, prepare
from benchbench.runner.attach.stages import stage_profile
from benchbench.runner.attach.summary import _AMP


def install(config_path: str) -> None:
    """Called before the script's first line: read the launcher's settings, put every hook in place."""
    with open(config_path) as f:
        cfg = json.load(f)
    if os.environ.get(RANKS_ENV):
        prepare(cfg)  # one of torchrun's ranks: its own output, the warm-up every rank shares
    probe = Probe(cfg)

    import torch
    import torch.autograd
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    from torch.utils.data import dataloader as dl

    probe.global_handles += [register_module_forward_pre_hook(probe.on_forward_pre),
                             register_module_forward_hook(probe.on_forward_post, always_call=True)]
    def opt_post(opt: Any, args: Any, kwargs: Any) -> None:
        if probe.opt_t0 is not None and id(opt) == probe.optimizer_id:
            probe.ledger.nested("train_optimizer", time.perf_counter() - probe.opt_t0)
            probe.opt_t0 = None
        probe.on_optimizer_step(opt)

    register_optimizer_step_post_hook(opt_post)

    def opt_pre(opt: Any, args: Any, kwargs: Any) -> None:
        if probe.phase == "profile" and id(opt) == probe.optimizer_id:
            probe.open_phase("optimizer")
        elif probe.phase == "epochs" and id(opt) == probe.optimizer_id:
            probe.opt_t0 = time.perf_counter()

    register_optimizer_step_pre_hook(opt_pre)

    orig_backward = torch.autograd.backward

    def backward(tensors: Any, *a: Any, **k: Any) -> Any:
        probe.on_backward(tensors)
        probe.open_phase("backward")
        t0 = time.perf_counter()
        try:
            return orig_backward(tensors, *a, **k)
        finally:
            probe.close_phase("backward")
            if probe.phase == "epochs":
                probe.ledger.enter("train", t0)
                probe.ledger.nested("train_backward", time.perf_counter() - t0)

    torch.autograd.backward = backward

    orig_next = dl._BaseDataLoaderIter.__next__

    def __next__(self: Any) -> Any:
        probe.open_phase("data_wait")
        probe.on_wait_enter()
        epochs = probe.phase == "epochs"
        n0 = self._num_yielded if epochs else 0
        if epochs:
            probe.ledger.inside = "data_wait"  # the sampler's samples in a fetch are a wait's, not code's
        t0 = time.perf_counter()
        try:
            batch = orig_next(self)
        except StopIteration:
            # the epoch's end: without persistent_workers the iterator shuts its workers down here (joins them)
            t1 = time.perf_counter()
            probe.close_phase("data_wait")
            probe.on_wait(t1 - t0)
            if epochs:
                probe.epoch_fetch(self, n0, t0, t1, True)
            raise
        except BaseException:
            probe.close_phase("data_wait")
            raise
        t1 = time.perf_counter()
        probe.close_phase("data_wait")
        probe.on_next(self, t1 - t0, batch)
        if epochs:
            probe.epoch_fetch(self, n0, t0, t1, False, batch)
        return batch

    dl._BaseDataLoaderIter.__next__ = __next__

    overrides = cfg.get("loader") or {}
    orig_init = dl.DataLoader.__init__

    def __init__(self: Any, *a: Any, **k: Any) -> None:
        if overrides:
            a, k = _override(a, k, overrides, orig_init)
        orig_init(self, *a, **k)
        self.__dict__["_bb_where"] = call_site()  # the line that built it: where batch_size is changed

    # its signature kept (`__wrapped__`): Lightning re-makes a loader from the arguments its signature names,
    # to give it a DistributedSampler; behind `*a, **k` the batch size was lost (a batch of 1 under DDP)
    dl.DataLoader.__init__ = functools.update_wrapper(__init__, orig_init)
    _torch_settings(cfg.get("torch") or {})

    orig_get = dl.DataLoader._get_iterator

    val_overrides = cfg.get("val_loader") or {}

    def _get_iterator(self: Any) -> Any:
        if val_overrides and probe.train_loader is not None and id(self) != probe.train_loader:
            val_loader_settings(self, val_overrides)  # advise's validation-loader knobs (training has stepped)
        prof = stage_profile(self, probe) if cfg.get("stages", True) else None
        epochs = probe.phase == "epochs"
        if epochs:
            probe.epoch_before(id(self))
        # making the iterator starts its workers (each epoch, without persistent_workers): the loop waits for
        # its data here as much as in __next__
        probe.open_phase("data_wait")
        probe.on_wait_enter()
        t0 = time.perf_counter()
        try:
            it = orig_get(self)
        finally:
            t1 = time.perf_counter()
            probe.close_phase("data_wait")
        probe.on_iterator(it, t1 - t0)
        probe.iter_loader[id(it)] = id(self)
        with contextlib.suppress(Exception):  # an iterable data set without a length
            probe.loader_len[id(self)] = len(self)
        if epochs:
            probe.epoch_iterator(it, id(self), t0, t1)
        probe.loaders[id(self)] = {"num_workers": self.num_workers, "pin_memory": bool(self.pin_memory),
                                 "persistent_workers": bool(self.persistent_workers),
                                 "prefetch_factor": self.prefetch_factor if self.num_workers else None,
                                 "batch_size": self.batch_size, "dataset": type(self.dataset).__name__,
                                 "drop_last": bool(self.drop_last), "where": self.__dict__.get("_bb_where")}
        if prof is not None:
            probe.stage_profiles[id(self)] = prof
        return it

    dl.DataLoader._get_iterator = _get_iterator
    _patch_reset(dl, probe)
    if cfg.get("epochs") or cfg.get("seconds"):
        from benchbench.runner.attach.saves import Writes

        probe.writes = Writes(probe.on_write, before=probe.epoch_write_starts)
        probe.writes.install_functions()

    for mod in ("torch.amp", "torch.cuda.amp", "torch.amp.grad_scaler"):
        cls = getattr(sys.modules.get(mod) or __import__(mod, fromlist=["GradScaler"]), "GradScaler", None)
        if cls is not None and not getattr(cls.update, "_bb", False):
            _patch_update(cls, probe)

    orig_autocast_enter = torch.autocast.__enter__

    def autocast_enter(self: Any) -> Any:
        if getattr(self, "_enabled", False) and probe.phase in ("starting", "warmup"):
            _AMP["dtype"] = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.fast_dtype, str(self.fast_dtype))
        return orig_autocast_enter(self)

    torch.autocast.__enter__ = autocast_enter

    prev_hook = sys.excepthook

    def excepthook(tp: Any, value: Any, tb: Any) -> None:
        where = None
        for fr in reversed(traceback.extract_tb(tb)):
            if is_user_file(fr.filename):
                where = f"{os.path.relpath(fr.filename)}:{fr.lineno}"
                break
        probe.error = f"{tp.__name__}: {value}"
        probe.error_where = where
        prev_hook(tp, value, tb)

    sys.excepthook = excepthook
    atexit.register(probe.at_exit)
    _on_terminate(probe)

    def in_child() -> None:
        """A forked child (a DataLoader worker) is not the script: no global hooks there, nothing written."""
        for h in probe.global_handles:
            h.remove()
        probe.global_handles.clear()
        probe.written = True
        probe.phase = "child"

    os.register_at_fork(after_in_child=in_child)
    if cfg.get("rank"):
        probe.rank_clock = RankClock(probe)
        probe.rank_clock.install()  # outside the probe's own backward: a rank's step on the node's clock
    probe.progress("installed")


def _on_terminate(probe: Probe) -> None:
    """SIGTERM (benchbench ending the script's process group: its --timeout, or a signal benchbench received)
    kills Python without running atexit: write what was measured first, then die of the signal as before. Only
    where the script has no handler of its own at startup (one it installs later wins, as without benchbench;
    the streamed progress still has its steps)."""
    import signal

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_term(signum: int, frame: Any) -> None:
        if not probe.written:
            probe.stopped_by = signum
            # the group's DataLoader workers die of the same SIGTERM: torch's SIGCHLD handler would raise
            # "DataLoader worker ... is killed" into the summary being written, losing the steps it holds
            with contextlib.suppress(Exception):
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            with contextlib.suppress(Exception):
                probe.abandon_window()
            with contextlib.suppress(Exception):
                probe.write()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)


def _patch_reset(dl: Any, probe: Probe) -> None:
    """A persistent iterator reset for the next pass (`DataLoader.__iter__` with persistent_workers): under
    --epochs an epoch's turn, its workers told to start again and waited for."""
    cls = dl._MultiProcessingDataLoaderIter
    orig = cls._reset

    def _reset(self: Any, loader: Any, first_iter: bool = False) -> None:
        if first_iter or probe.phase != "epochs":
            return orig(self, loader, first_iter)
        probe.epoch_before(id(loader))
        t0 = time.perf_counter()
        try:
            return orig(self, loader, first_iter)
        finally:
            probe.epoch_iterator(self, id(loader), t0, time.perf_counter())

    cls._reset = _reset


def _patch_update(cls: type, probe: Probe) -> None:
    """GradScaler: `update()` ends a step it skipped; `scale(loss)` says which loss the scaled tensor is."""
    orig, orig_scale = cls.update, cls.scale

    def update(self: Any, *a: Any, **k: Any) -> Any:
        out = orig(self, *a, **k)
        if getattr(self, "_enabled", True):
            probe.on_scaler_update(self)
        return out

    def scale(self: Any, outputs: Any) -> Any:
        out = orig_scale(self, outputs)
        if out is not outputs and getattr(outputs, "numel", lambda: 0)() == 1:
            probe.on_scale(outputs, out)
        return out

    update._bb = True  # type: ignore[attr-defined]
    cls.update, cls.scale = update, scale

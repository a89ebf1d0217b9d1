"""`attach --epochs N`: after the profiler window, the script runs N whole epochs with their wall time accounted
(`epochs.EpochLedger`), the functions that take it sampled (`sampler.StackSampler`), its checkpoints timed
(`saves.Writes`). Mixed into `probe.Probe`.

An epoch is one pass of the training loader (the loader that fed the timed steps): it begins where a pass
begins — the loader's iterator made, a persistent iterator reset, or, for a loader that repeats one iterator
forever (Ultralytics' InfiniteDataLoader), its yielded count crossing a multiple of its length — and ends where
the next begins. A script with no such passes uses `--seconds S` of wall time instead.

On a GPU the host's clock is the epoch's clock, and the GPU runs behind it: the hooks synchronise at the few
instants where the time changes hands — an epoch's turn, validation's start, a checkpoint's write — so the GPU
work the training steps queued is billed to training, never to the validation that waited for it. Never inside
the training steps: their time is the steps' own.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from benchbench.runner.attach.epochs import PARTS, EpochLedger

#: trainers that say how many epochs the run has: (module, class, attribute)
RUN_EPOCHS = (("lightning.pytorch.trainer.trainer", "Trainer", "max_epochs"),
              ("pytorch_lightning.trainer.trainer", "Trainer", "max_epochs"),
              ("transformers.training_args", "TrainingArguments", "num_train_epochs"),
              ("ultralytics.engine.trainer", "BaseTrainer", "epochs"))


class EpochPhase:
    """The epochs' state lives on the probe: `ledger`, `sampler`, `writes`, `train_loader`, ..."""

    def epochs_wanted(self) -> bool:
        return bool(self.cfg.get("epochs") or self.cfg.get("seconds"))

    def begin_epochs(self) -> None:
        """The profiler window is over: account the next epochs (from the next pass of the training loader)."""
        import torch
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        from benchbench.runner.attach.sampler import StackSampler

        # the training loader is the one that fed the first step (`Probe._start`)
        if self.train_loader is None and not self.cfg.get("seconds"):
            self.epochs_over = True
            self.epochs_error = ("the script's training steps were fed by no DataLoader: it has no epochs to "
                                 "account (a pass of the training loader marks one); --seconds S accounts S "
                                 "seconds of its wall time instead")
            self.finish()
            return
        self.phase = "epochs"
        self.ledger = EpochLedger()
        self.epoch_fresh = None  # the training iterator made (or reset) since its last batch: its pass has begun
        self.fwd_t0: float | None = None
        self.fwd_training = False
        self.edepth = 0
        self.has_params: dict[int, bool] = {}
        self.grad_enabled = torch.is_grad_enabled
        if self.writes is not None:
            self.writes.install_methods()
        self.epoch_handles = [register_module_forward_pre_hook(self._epoch_fwd_pre),
                              register_module_forward_hook(self._epoch_fwd_post, always_call=True)]
        self.sampler = StackSampler(self.ledger, float(self.cfg.get("sample_interval_s") or 0.01))
        self.sampler.start()
        self.epoch_deadline = None
        seconds = self.cfg.get("seconds")
        if seconds and not self.cfg.get("epochs"):
            now = time.perf_counter()
            self.ledger.begin_epoch(now)
            self.epoch_deadline = now + float(seconds)
        self.progress("epochs")

    # ------------------------------------------------------------------ the clock's turns
    def _epoch_sync(self) -> None:
        """On a GPU, the queued work finished before the time changes hands (a few times an epoch)."""
        if self.cuda:
            import torch

            with contextlib.suppress(Exception):
                torch.cuda.synchronize(self.device)

    def _turn(self, t: float) -> None:
        """A pass of the training loader begins at `t`: the epoch in progress ends, the next begins (or, with
        enough epochs accounted, the run ends here)."""
        led = self.ledger
        if led.cur is not None and len(led.done) + 1 >= int(self.cfg.get("epochs") or 0):
            led.close(t, "the next epoch began")
            self.end_epochs()
            return
        led.begin_epoch(t)
        self.progress("epoch", force=True)

    def epoch_iterator(self, it: Any, loader_key: int, t0: float, t1: float) -> None:
        """An iterator made (or a persistent one reset) in [t0, t1]."""
        led = self.ledger
        if loader_key == self.train_loader and not self.epoch_deadline:
            self._turn(t0)
            self.epoch_fresh = id(it)
            led.interval("epoch_start", t0, t1, mode="train")
        else:
            led.interval("validation_data_wait", t0, t1, mode="validation")

    def epoch_before(self, loader_key: int | None) -> None:
        """Before a loader makes its iterator: the GPU's queue drained if the time is about to change hands."""
        if self.cuda and (loader_key == self.train_loader or self.ledger.mode != "validation"):
            self._epoch_sync()
        self.ledger.inside = "data_wait"

    def epoch_fetch(self, it: Any, n_before: int, t0: float, t1: float, ended: bool, batch: Any = None) -> None:
        """A batch fetched in [t0, t1] (`ended`: the fetch that found the pass over)."""
        led = self.ledger
        key = self.iter_loader.get(id(it))
        if key is not None and key == self.train_loader:
            length = self.loader_len.get(key)
            start = not ended and (n_before == 0 or bool(length and n_before % length == 0))
            fresh = self.epoch_fresh == id(it)
            self.epoch_fresh = None
            if start and not fresh and not self.epoch_deadline:
                self._epoch_sync()
                self._turn(t0)
            led.interval("epoch_start" if (start or ended) else "train_data_wait", t0, t1, mode="train")
            if not ended:
                led.count("train_batches")
        else:
            led.interval("validation_data_wait", t0, t1, mode="validation")
            self.val_iter = id(it)
            if not ended:
                led.count("validation_batches")
                from benchbench.runner.attach.frames import _first_tensor

                t = _first_tensor(batch)
                if t is not None and t.ndim >= 1:
                    led.count("validation_images", int(t.shape[0]))
                    if led.cur is not None and "validation_shape" not in led.cur:
                        led.cur["validation_shape"] = list(t.shape)

    def epoch_step_end(self, t: float) -> None:
        self.ledger.step_end(t)
        if self.epoch_deadline and t >= self.epoch_deadline:
            self.ledger.close(t, f"{float(self.cfg['seconds']):g} s of wall time (--seconds)")
            self.end_epochs()

    def epoch_write_starts(self) -> None:
        if self.phase == "epochs":
            self._epoch_sync()
            self.ledger.inside = "checkpoint"

    def on_write(self, t0: float, t1: float, info: dict[str, Any]) -> None:
        if self.phase == "epochs":
            self.ledger.write(t0, t1, info)

    # ------------------------------------------------------------------ forwards
    def _epoch_fwd_pre(self, module: Any, args: Any) -> None:
        self.edepth += 1
        if self.edepth != 1:
            return
        has = self.has_params.get(id(module))
        if has is None:
            has = self.has_params[id(module)] = any(True for _ in module.parameters())
        if not has:  # a loss module, a transform: not a model's forward
            self.fwd_t0 = None
            return
        training = bool(module.training and self.grad_enabled())
        led = self.ledger
        if not training and led.mode != "validation":
            self._epoch_sync()
        self.fwd_t0 = time.perf_counter()
        self.fwd_training = training
        if training and led.mode != "train":
            led.enter("train", self.fwd_t0)
        elif not training and led.mode != "validation":
            led.enter("validation", self.fwd_t0)

    def _epoch_fwd_post(self, module: Any, args: Any, out: Any) -> None:
        self.edepth = max(0, self.edepth - 1)
        if self.edepth == 0 and self.fwd_t0 is not None:
            dt = time.perf_counter() - self.fwd_t0
            self.ledger.nested("train_forward" if self.fwd_training else "validation_forward", dt)
            self.fwd_t0 = None

    # ------------------------------------------------------------------ the end
    def end_epochs(self) -> None:
        self.stop_epoch_hooks()
        self.finish()

    def stop_epoch_hooks(self) -> None:
        for h in getattr(self, "epoch_handles", []):
            h.remove()
        self.epoch_handles = []
        if getattr(self, "sampler", None) is not None:
            self.sampler.stop()
        self.epochs_over = True

    def epoch_doc(self, final: bool) -> dict[str, Any] | None:
        """The epochs for the result document; the epoch in progress (a script that exits or is stopped in it)
        is closed at this instant, as not whole when benchbench stopped it."""
        led = getattr(self, "ledger", None)
        if led is None:
            return None
        if final and led.cur is not None:
            stopped = self.stopped_by is not None
            led.close(time.perf_counter(), "benchbench stopped the script" if stopped else "the script exited",
                      whole=not stopped)
        epochs = [dict(e.items()) for e in led.done]
        whole = [e for e in epochs if e["whole"]] or epochs
        parts = {p: sum(e["parts"][p] for e in whole) / len(whole) for p in PARTS} if whole else {}
        s = self.sampler
        doc: dict[str, Any] = {
            "wanted": int(self.cfg.get("epochs") or 0) or None, "seconds": self.cfg.get("seconds"),
            "epochs": epochs,
            "code": s.functions(parts) if s is not None and parts else [],
            "sampler": {"interval_s": s.interval_s, "samples": s.samples, "cost_s": s.cost_s, "note": s.note}
            if s else None,
            "writers": list(self.writes.patched) if self.writes is not None else [],
            "validation_loader": self.loaders.get(self.iter_loader.get(self.val_iter, -1)),
        }
        if final:
            doc["run_epochs"], doc["run_epochs_source"] = self._run_epochs()
        return doc

    def _run_epochs(self) -> tuple[int | None, str | None]:
        """The run's epochs: `--run-epochs`, else what the script's trainer was configured with (read from its
        object), else unknown."""
        if self.cfg.get("run_epochs"):
            return int(self.cfg["run_epochs"]), "--run-epochs"
        import gc
        import sys

        classes = []
        for mod, name, attr in RUN_EPOCHS:
            cls = getattr(sys.modules.get(mod), name, None)
            if isinstance(cls, type):
                classes.append((cls, attr, f"{mod.split('.')[0]} {name}.{attr}"))
        if not classes:
            return None, None
        for obj in gc.get_objects():
            for cls, attr, where in classes:
                if isinstance(obj, cls):
                    with contextlib.suppress(Exception):
                        v = getattr(obj, attr)
                        if v is not None and float(v) > 0:
                            return round(float(v)), where
        return None, None

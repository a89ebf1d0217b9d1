"""In the script's own process: find its training steps and time them, without a line of it changed.

Installed before the script's first line (`boot/sitecustomize.py` calls `install`), through torch's own
global hooks and two patched methods:

- a **step** is one `optimizer.step()` of the first optimizer that steps (torch's global optimizer step post
  hook), or one `GradScaler.update()` that came without one (GradScaler skipped the step: still a step of
  training); several backward passes before a step (gradient accumulation) are one step;
- the **model** is the module whose parameters the stepping optimizer holds (`model.ModelFinder`: global module
  forward hooks, removed once it is known: they would cost every module call a Python call);
- the **batch** is what the script's DataLoader iterator yields (its `__next__`, timed: the data wait), the
  images a step the training loader's batch size times its batches (or what the model's training calls got);
- the **loss** is the tensor handed to `backward` (under GradScaler the one it scaled), copied on its device at
  the step and read once, after the block.

Timing is `run`'s: warm-up until the steps are steady, then N timed steps; on a GPU a CUDA event at each step
boundary and one sync per block, never one per step. A short profiler window follows (phases from the hooks
above, the model's top-level modules, Python stacks for the host syncs), then the result is written and the
script stopped (or left running with --keep-running).
"""
from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

from benchbench.runner.attach.epoch_phase import EpochPhase
from benchbench.runner.attach.frames import _first_tensor, call_site
from benchbench.runner.attach.model import ModelFinder
from benchbench.runner.attach.summary import Summary, _distributed, write_json
from benchbench.runner.attach.timing import Timing
from benchbench.runner.attach.window import Window

CONFIG_ENV = "BENCHBENCH_ATTACH"
PROGRESS_SUFFIX = ".progress"
SNAPSHOT_EVERY_S = 0.5


class Probe(ModelFinder, Timing, Window, EpochPhase, Summary):
    """The state of one attached run: which phase it is in, the boundaries seen, what was measured."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.out = cfg["out"]
        self.steps_wanted = int(cfg.get("steps") or 10)
        w = cfg.get("warmup", "auto")
        self.warmup_auto = w in (None, "auto")
        self.warmup_max = int(cfg.get("max_warmup") or 30) if self.warmup_auto else int(w)
        self.profile_steps = int(cfg.get("profile_steps") if cfg.get("profile_steps") is not None else 2)
        self.phase = "starting"  # starting -> warmup -> timed -> [await-window] -> profile -> done
        self.written = False
        self.t_install = time.perf_counter()
        # what was seen
        self.optimizer_id: int | None = None
        self.optimizer: Any = None
        self.other_optimizer_steps = 0
        self.boundaries = 0  # optimizer steps of the step optimizer (+ skipped ones)
        self.stepped_since_update = False
        self.scaler_seen = False
        self.scaler: Any = None  # the GradScaler whose update() ended steps
        self.skipped_steps = 0
        self.skipped_at: list[int] = []  # steps GradScaler skipped, as indices into the recorded losses
        self.unscaled: dict[int, Any] = {}  # id(scaled loss) -> the loss GradScaler.scale was given
        self.backward_calls = 0
        self.backward_in_step = 0
        self.lines: dict[str, str] = {}  # the script's own lines: model forward, DataLoader, optimizer step
        self.trackers: Any = None  # measure.trackers.Trackers around the timed steps (run's registry)
        self.tracked: dict[str, Any] = {}  # their results: gpu_conditions, cpu_contention, tracker_errors
        self.batches_in_step = 0
        self.batches_per_step: list[int] = []  # batches fetched between two steps (> 1: accumulation)
        self.backward_per_step: list[int] = []
        self.forward_outer: dict[int, list[Any]] = {}  # id(module) -> [module, calls, params]
        self.model: Any = None
        self.model_info: dict[str, Any] = {}
        self.depth = 0
        self.global_handles: list[Any] = []
        self.batch_shape: list[int] | None = None
        self.batch_size: int | None = None  # the first batch's leading dimension (any loader's)
        self.model_batch: int | None = None  # the images of the model's first training call
        self.images_in_step = 0
        self.images_per_step: list[int] = []  # per timed step: the images the model was trained on
        # by the DataLoader (never by its iterator: a new iterator, another loader's, may take a dead one's id)
        self.loaders: dict[int, dict[str, Any]] = {}  # id(DataLoader) -> its settings
        self.batches_by_loader: dict[int, int] = {}
        self.stage_profiles: dict[int, Any] = {}  # id(DataLoader) -> StageProfile
        self.stage_note: str | None = None
        # a DataLoader iterator made since the last step (an epoch's start: its workers start, a validation loop
        # runs): the profiler window waits for the epoch to turn rather than hold one (`window.Window`)
        self.iter_in_step = False
        self.last_iter: int | None = None  # id of the iterator that yielded the last batch
        self.iter_refs: dict[int, Any] = {}  # id(iterator) -> a weak reference (never keeps its workers alive)
        self.window_wait = 0
        self.window_waited = 0
        self.window_note: str | None = None
        self.steps_per_epoch: int | None = None
        self.epoch_start_steps: list[int] = []  # timed steps (0-based) that made a DataLoader iterator
        self.wait_in_step = 0.0
        self.error: str | None = None
        self.error_where: str | None = None
        # clocks
        self.cuda = False
        self.device: Any = None
        self.t_last: float | None = None
        self.warm_s: list[float] = []
        self.step_s: list[float] = []
        self.wait_s: list[float] = []
        self.events: list[Any] = []
        self.entered: list[Any] = []  # per timed step: an event as its first wait for data began ...
        self.ready: list[Any] = []  # ... and one as that batch was there
        self.enqueue_s: list[float] = []
        self.block_t0: float | None = None
        self.block_wall_s: float | None = None
        self.losses: list[Any] = []  # per timed/warm-up step: a list of loss tensors (one per backward)
        self.loss_now: list[Any] = []
        self.steady = False
        self.before_stages: dict[int, list[float]] = {}
        self.prof: Any = None
        self.prof_ranges: list[Any] = []
        self.phase_stack: list[tuple[str, Any]] = []
        self.module_ranges: Any = None
        self.prof_steps = 0
        self.prof_warm = 0  # the profiler's warm-up steps still to pass
        self.prof_lines = False  # the window names the syncs' lines (with Python stacks), not the breakdown's
        self.model_hooks: list[Any] = []  # the window's phase hooks on the model
        self.trace_path: str | None = None
        self.breakdown: dict[str, Any] | None = None
        self.breakdown_error: str | None = None
        self.progress_path = self.out + PROGRESS_SUFFIX
        self.t_snapshot = 0.0
        self.stopped_by: int | None = None  # the signal that stopped the script (SIGTERM from benchbench)
        # --epochs: the epochs accounted after the window (`epoch_phase.EpochPhase`)
        self.iter_loader: dict[int, int] = {}  # id(iterator) -> id(its DataLoader)
        self.loader_len: dict[int, int] = {}  # id(DataLoader) -> its batches a pass (where it has a length)
        self.ledger: Any = None
        self.train_loader: int | None = None  # id of the DataLoader that fed the first step
        self.val_iter: int | None = None  # id of the last iterator that fed validation (an epoch's)
        self.sampler: Any = None
        self.writes: Any = None  # saves.Writes: the checkpoint writers, patched when epochs are asked for
        self.epochs_over = False
        self.opt_t0: float | None = None

    # ------------------------------------------------------------------ progress, for a script that dies
    def progress(self, what: str, force: bool = True) -> None:
        """What was measured so far, streamed to the progress file as it happens: every step taken (on a GPU
        those whose events have completed: read without a sync), the counts, the model and the loader — a
        partial result document. However the script ends (a kill, `os._exit`, a hang stopped at --timeout), the
        launcher has it: at most `SNAPSHOT_EVERY_S` of steps are lost. Written at each change of phase and
        otherwise at most every `SNAPSHOT_EVERY_S` (a write costs 0.7 ms with 50 steps taken, 1.4-1.9 ms with
        500: at most 0.4% of the time, `benchmarks/attach_snapshot.py`)."""
        now = time.perf_counter()
        if not force and now - self.t_snapshot < SNAPSHOT_EVERY_S:
            return
        self.t_snapshot = now
        try:
            doc = self.result(partial=True)
        except Exception as exc:  # a snapshot never breaks the script
            doc = {"phase": self.phase, "steps_seen": self.boundaries, "snapshot_error": f"{type(exc).__name__}: {exc}"}
        doc.update(partial=True, what=what, steps=self.boundaries, forwards=self.model_forwards(),
                   backwards=self.backward_calls)
        with contextlib.suppress(OSError):
            write_json(self.progress_path, doc)

    # ------------------------------------------------------------------ backward and the loss
    def on_scale(self, loss: Any, scaled: Any) -> None:
        """`GradScaler.scale(loss)`: the tensor handed to backward will be `scaled` (x65536 and changing as the
        scale backs off): the loss recorded is the one it scaled."""
        self.unscaled[id(scaled)] = loss

    def on_backward(self, tensors: Any) -> None:
        import torch

        self.backward_calls += 1
        self.backward_in_step += 1
        t = tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors
        t = self.unscaled.get(id(t), t)
        self.unscaled.clear()  # one scaled loss per backward: nothing to keep for the next
        if isinstance(t, torch.Tensor) and t.numel() == 1 and self.phase in ("warmup", "timed"):
            # a copy on the device, now (no sync): a loss buffer the script reuses, or a CUDA graph's static
            # output, is overwritten in place before the losses are read after the block
            self.loss_now.append(t.detach().reshape(()).to(torch.float32, copy=True))
        if self.backward_calls == 1:
            self.progress("first backward")
        else:
            self.progress("backward", force=False)  # a script that never steps: its counts stay current

    # ------------------------------------------------------------------ the data
    def on_wait_enter(self) -> None:
        """The script asks for data (a DataLoader's `__next__`, or making its iterator). On a GPU, the step's
        first wait records an event here and one when the batch is there (`on_next`): the GPU time between them
        is what the wait starved it of — zero while the GPU still has queued work (the step's own, a
        GradScaler update, an EMA, metrics: work after `optimizer.step()` is not a wait for data)."""
        if self.cuda and self.phase == "timed" and len(self.entered) < len(self.events):
            self.entered.append(self._event())

    def on_next(self, it: Any, dt: float, batch: Any) -> None:
        self.last_iter = id(it)
        key = self.iter_loader.get(id(it), id(it))
        self.batches_by_loader[key] = self.batches_by_loader.get(key, 0) + 1
        self.batches_in_step += 1
        if self.phase in ("warmup", "timed"):
            self.wait_in_step += dt
            # the GPU's starvation is judged at each step's first batch (accumulation fetches more than one)
            if self.cuda and self.phase == "timed" and len(self.ready) < len(self.entered):
                self.ready.append(self._event())
        if self.batch_size is None:
            t = _first_tensor(batch)
            if t is not None and t.ndim >= 1:
                self.batch_size = int(t.shape[0])
                self.batch_shape = list(t.shape)

    # ------------------------------------------------------------------ a step's end
    def on_optimizer_step(self, optimizer: Any) -> None:
        if self.optimizer_id is None:
            self.optimizer_id, self.optimizer = id(optimizer), optimizer
            where = call_site()
            if where:
                self.lines["optimizer_step"] = where
        if id(optimizer) != self.optimizer_id:
            self.other_optimizer_steps += 1
            return
        self.stepped_since_update = True
        self.boundary()

    def on_scaler_update(self, scaler: Any = None) -> None:
        self.scaler_seen = True
        if scaler is not None:
            self.scaler = scaler
        if not self.stepped_since_update and self.optimizer_id is not None:
            self.skipped_steps += 1
            if self.phase in ("warmup", "timed"):  # its index among the recorded losses (warm-up, then timed)
                self.skipped_at.append(len(self.losses))
            self.boundary()  # GradScaler skipped optimizer.step (inf/nan gradients): still a step
        self.stepped_since_update = False

    def boundary(self) -> None:
        now = time.perf_counter()
        self.boundaries += 1
        self.backward_per_step.append(self.backward_in_step)
        self.backward_in_step = 0
        if self.phase == "timed":
            self.batches_per_step.append(self.batches_in_step)
            self.images_per_step.append(self.images_in_step)
        self.batches_in_step = 0
        self.images_in_step = 0
        if self.phase == "starting":
            self._start()
            self.t_last = now
            self.wait_in_step = 0.0
            self.loss_now = []
            self.iter_in_step = False
            return
        if self.phase == "warmup":
            self._warmup_step(now)
        elif self.phase == "timed":
            self._timed_step(now)
        elif self.phase == "await-window":
            self._await_window_step()
        elif self.phase == "profile":
            self._profile_step()
        elif self.phase == "epochs":
            self.epoch_step_end(now)
        self.wait_in_step = 0.0
        self.iter_in_step = False
        self.progress("step", force=False)

    def on_iterator(self, it: Any, dt: float) -> None:
        """A DataLoader's iterator was made (`_get_iterator`: a new epoch without persistent workers, a
        validation pass) in `dt` seconds, its workers started: a wait for data, and the step it falls in is not
        a steady training step. (Kept by id, as the batches are: a new epoch's iterator may reuse the last
        one's id, so the reference is replaced here.)"""
        self.iter_in_step = True
        self.on_wait(dt)
        with contextlib.suppress(TypeError):
            self.iter_refs[id(it)] = weakref.ref(it)

    def on_wait(self, dt: float) -> None:
        """A wait for data outside a batch's fetch: an iterator made, or one ended (its workers joined)."""
        if self.phase in ("warmup", "timed"):
            self.wait_in_step += dt

    def _start(self) -> None:
        import torch

        if _distributed() and not self.cfg.get("rank"):  # torchrun's ranks: each is attached (`ranks`)
            self.fail_refused("the script runs torch.distributed with more than one rank: attach measures one "
                              "process (run one rank with WORLD_SIZE=1, or a suite with world_size)")
            return
        self.train_loader = self.iter_loader.get(self.last_iter) if self.last_iter is not None else None
        self.find_model()
        if self.model is None:
            self.device = torch.device("cpu")
        self.phase = "warmup"
        if self.cuda:
            self.events = [self._event()]
        self.progress("first step")

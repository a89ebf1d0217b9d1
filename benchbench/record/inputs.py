"""The input pipeline in a record: its stages as the workers timed them, and the capacity model built from them.

`InputStages` is what `measure.stages` read from the workers during the timed block (or, in the capacity
pass, from one worker alone). `InputCapacity` is the pass's measurement of supply (samples/s the pipeline
makes alone with 0..cores workers) and demand (samples/s the model trains on a batch already in memory),
and the step time it predicts for each worker count (`predict`, the one formula, tested against measured
cells in `docs/inputs.md`).
"""

from __future__ import annotations

from pydantic import Field

from benchbench.record.parts import Part

SERIAL_INPUT_SHARE = 0.2  # with 0 workers, the input's share of the step from which the step is input-bound


class InputStage(Part):
    name: str
    kind: str  # read | decode | transform | collate | other
    per_sample_s: float  # this stage's exclusive time per sample (collate: per batch / batch size)
    share: float | None = None  # of a sample's time
    calls: int = 0
    per_call_s: float | None = None
    per_call_sd_s: float | None = None
    max_s: float | None = None


class ItemTime(Part):
    mean: float
    sd: float | None = None
    max: float | None = None


class InputStages(Part):
    samples: int
    batches: int = 0
    per_sample_s: float  # a sample's time in the worker, its share of collate included
    item_s: ItemTime | None = None
    where: str = "workers"  # workers | main process
    span: str = "the timed block"
    samples_by_worker: list[int] | None = None
    stages: list[InputStage] = Field(default_factory=list)

    def dominant(self) -> InputStage | None:
        named = [s for s in self.stages if s.per_sample_s > 0]
        return max(named, key=lambda s: s.per_sample_s) if named else None

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.kind] = out.get(s.kind, 0.0) + s.per_sample_s
        return out


class Supply(Part):
    workers: int
    img_s: float  # samples per second the pipeline made alone, with this many workers
    batches: int
    seconds: float


class Prediction(Part):
    workers: int
    step_s: float
    bound: str  # model | input | cores (CPU: the model's threads and the workers share the cores)
    input_s: float  # the pipeline's time per batch at this worker count


class InputCapacity(Part):
    device: str
    cores: int  # the cores this cell may use (its affinity)
    batch_size: int
    compute_step_s: float  # a step on a batch already on the device: the model alone
    model_cpu_s: float | None = None  # the process's CPU time per such step (CPU: what its threads used)
    demand_img_s: float
    supply: list[Supply] = Field(default_factory=list)
    stages_alone: InputStages | None = None  # one worker alone (or the main process): the stage profile
    pin_s: float | None = None  # CUDA: pinning one batch
    host_to_device_s: float | None = None  # CUDA: copying one pinned batch
    predicted: list[Prediction] = Field(default_factory=list)
    cost_s: float | None = None  # what the pass cost

    def at(self, workers: int) -> Prediction | None:
        return next((p for p in self.predicted if p.workers == workers), None)

    def best(self) -> Prediction | None:
        return min(self.predicted, key=lambda p: (round(p.step_s, 6), p.workers)) if self.predicted else None

    def supply_at(self, workers: int) -> float | None:
        return next((s.img_s for s in self.supply if s.workers == workers), None)


def predict(device: str, cores: int, batch: int, compute_s: float, model_cpu_s: float | None,
            supply: dict[int, float], h2d_s: float = 0.0) -> list[Prediction]:
    """The step time for each measured worker count.

    0 workers: the main process makes the batch, then trains on it: input + compute, one after the other.
    w workers: the batch is made while the model trains; the step is the slower of the two. On a CPU the
    model's threads and the workers also share the cell's cores: the step can be no shorter than all the CPU
    work of a step (the model's CPU time plus the pipeline's, one worker's time per batch) spread over the cores.
    On a GPU the copy to the device is on the step's path.
    """
    out = []
    one = supply.get(1)
    pipeline_cpu = batch / one if one else None  # CPU seconds the pipeline spends per batch
    for w in sorted(supply):
        input_s = batch / supply[w] if supply[w] > 0 else float("inf")
        if w == 0:  # serial: the input is on the step's path; input-bound when it is a fifth of the step or more
            step = compute_s + input_s + h2d_s
            out.append(Prediction(workers=0, step_s=step, bound="input" if input_s >= SERIAL_INPUT_SHARE * step
                                  else "model", input_s=input_s))
            continue
        step, bound = (compute_s + h2d_s, "model") if compute_s + h2d_s >= input_s else (input_s, "input")
        if device == "cpu" and model_cpu_s and pipeline_cpu:
            shared = (model_cpu_s + pipeline_cpu) / max(1, cores)
            if shared > step:
                step, bound = shared, "cores"
        out.append(Prediction(workers=w, step_s=step, bound=bound, input_s=input_s))
    return out

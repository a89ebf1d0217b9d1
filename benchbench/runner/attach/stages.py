"""A loader's input stages timed where its samples are made (its workers, or the script's process): set up as
the script makes a loader's iterator (`install`), read by `measure.stage_profile` after the timed steps."""

from __future__ import annotations

from typing import Any


def stage_profile(loader: Any, probe: Any) -> Any:
    """Time this loader's samples stage by stage where they are made (its workers, or here): its data set
    timed item by item in place (a subclass swapped in: the script's isinstance checks still hold), its
    collate and worker initialiser wrapped. Workers must fork (a spawned worker would need the swapped class
    importable): otherwise the stages are not timed, and the record says why."""
    import multiprocessing as mp

    from benchbench.measure.stage_profile import StageProfile, TimedCollate, WorkerInit, time_items_in_place

    if getattr(loader, "_bb_stages", None) is not None:
        return loader._bb_stages
    ctx = loader.multiprocessing_context
    method = (ctx.get_start_method() if ctx is not None and not isinstance(ctx, str) else ctx) or \
        mp.get_start_method(allow_none=True) or "fork"
    if loader.num_workers > 0 and method != "fork":
        probe.stage_note = f"its DataLoader starts workers by {method}: the stages are timed only in forked ones"
        return None
    try:
        prof = StageProfile(loader.dataset)
        if not time_items_in_place(loader.dataset):
            probe.stage_note = f"{type(loader.dataset).__name__} cannot be timed in place (a C-level class)"
            return None
        loader.collate_fn = TimedCollate(loader.collate_fn)
        if loader.num_workers > 0:
            loader.worker_init_fn = WorkerInit(prof, loader.worker_init_fn)
        else:
            prof.start_main(loader.dataset)
    except Exception as exc:
        probe.stage_note = f"{type(exc).__name__}: {exc}"
        return None
    loader.__dict__["_bb_stages"] = prof
    return prof

"""The device's measured matmul peak, kept per machine: only the first run on a machine pays the calibration.

A calibration is a few seconds of a child process importing torch and timing matmuls, and every `run`,
`advise` and `attach --repeat` used to pay it again. The peak is a property of the machine, not of the run,
so it is kept (`measure.kept`, kind "peak"), one file per environment fingerprint (`measure.env.fingerprint`:
the device, GPU, CPU model, threads, torch, CUDA, cuDNN and driver): a change of any of them is another file, and
`--recalibrate` measures again and replaces the modes it measured.

Only a clean measurement is kept: no error, and blocks that agree within `MAX_SPREAD` (a calibration taken
while another process came and went on a core reads low in some blocks, and would otherwise be every later run's
peak). A CPU's blocks vary 12-14% alone on the 2-core VM this was written on (5 blocks of 8 1024^3 matmuls), so
the bound is 25%; a calibration slowed evenly through all its blocks passes it, which is what `--recalibrate` is
for. A kept value says so in the record: `cached: true` beside the time it was measured (`calibrated_at`)."""

from __future__ import annotations

from typing import Any

from benchbench.measure import kept

#: blocks of one calibration further apart than this (max-min over median) are not kept
MAX_SPREAD = 0.25


def load(fingerprint: str, modes: list[str]) -> dict[str, Any] | None:
    """Every mode's kept peak, marked as kept; None unless all of them are there."""
    peaks = kept.read("peak", fingerprint) or {}
    if not modes or any(not isinstance(peaks.get(m), dict) or not peaks[m].get("flops_per_s") for m in modes):
        return None
    return {m: {**peaks[m], "cached": True} for m in modes}


def keepable(peak: Any) -> bool:
    return (isinstance(peak, dict) and not peak.get("error") and bool(peak.get("flops_per_s"))
            and (peak.get("spread") or 0.0) <= MAX_SPREAD)


def save(fingerprint: str, peaks: dict[str, Any]) -> list[str]:
    """Keep the clean modes of a fresh calibration beside those already kept; the modes kept."""
    fresh = {m: {k: v for k, v in p.items() if k != "cached"} for m, p in peaks.items() if keepable(p)}
    if not fresh or not kept.write("peak", fingerprint, {**(kept.read("peak", fingerprint) or {}), **fresh}):
        return []
    return sorted(fresh)


def all_kept(peaks: dict[str, Any] | None) -> bool:
    """Whether every mode of a run's peak came from an earlier run on this machine."""
    return bool(peaks) and all(isinstance(p, dict) and p.get("cached") for p in peaks.values())

"""`benchbench advise`: prove the fix by measurement, one knob at a time.

`candidates` (which knobs, bounded by the base's own measurement) -> `experiment` (interleaved A/B runs,
the gate's interval, the numerics guard, the combination) -> rendered by `report.advise`.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from benchbench.measure.timer import is_steady, summarize, timed_loop


def test_summarize_keeps_samples_and_spread() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["n"] == 5 and s["samples"][-1] == 100.0
    assert s["p10"] == pytest.approx(1.4) and s["p90"] == pytest.approx(61.6)
    assert s["iqr"] == pytest.approx(2.0)
    assert s["cv"] > 1


def test_steady_needs_three_close_samples() -> None:
    assert not is_steady([1.0, 1.0])
    assert is_steady([5.0, 1.0, 1.02, 0.99])
    assert not is_steady([1.0, 1.2, 1.0])


def test_warmup_stops_when_steady_and_data_wait_is_separate() -> None:
    import time

    durations = iter([0.05, 0.02, 0.01, 0.01, 0.01] + [0.01] * 100)
    waits = itertools.cycle([0.004])

    def batches():
        while True:
            time.sleep(next(waits))
            yield (None, None)

    out = timed_loop(batches(), lambda b: b, lambda x, y: time.sleep(next(durations)), torch.device("cpu"),
                     warmup=10, steps=4)
    assert out.steady and len(out.warmup_s) < 10
    assert len(out.step_s) == 4 and len(out.data_wait_s) == 4
    assert all(w >= 0.003 for w in out.data_wait_s)
    assert all(s > w for s, w in zip(out.step_s, out.data_wait_s))


def test_warmup_bounded() -> None:
    out = timed_loop(itertools.repeat((None, None)), lambda b: b, lambda x, y: None, torch.device("cpu"),
                     warmup=0, steps=2)
    assert out.warmup_s == [] and len(out.step_s) == 2

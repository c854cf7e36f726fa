"""The adaptive encoder alone: its levels, its proposals from given measurements, its errors."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt.aggregation import plan
from hpcopt.encoders import get_encoder
from hpcopt.encoders.adaptive import Adaptive
from hpcopt.errors import UsageError


def test_levels_run_from_least_to_most_compressed() -> None:
    enc = get_encoder("adaptive:levels=0.01/0.5/0.1")
    assert enc.values == [0.5, 0.1, 0.01] and enc.name == "adaptive" and not enc.summable
    assert get_encoder("adaptive:base=qsgd").values == [127, 31, 7, 3, 1]
    assert get_encoder("adaptive:base=randomk,levels=0.5/0.25").summable
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    for level, ratio in enumerate(enc.values):
        enc.level = level
        assert enc.encode(x).nbytes == get_encoder(f"topk:ratio={ratio}").encode(x).nbytes


def test_time_rule_steps_toward_the_least_compressed_level_within_budget() -> None:
    """Link time 1 µs per payload byte; payloads of d=10000 at 0.5/0.1/0.01: 30000, 6000 and
    600 bytes. Each call moves one level toward the least compressed one that fits target ×
    compute (a running average)."""
    enc = Adaptive(levels="0.5/0.1/0.01")
    d, x = 10_000, np.ones(10_000, np.float32)
    level, signal = enc.propose(d, 0.0)
    assert level == 0 and np.isnan(signal)  # nothing measured yet
    enc.observe(x, enc, sent=30_000, communicate_s=0.03)
    assert enc.propose(d, 0.005) == (1, pytest.approx(0.03 / 0.005))  # 600 B fit: one step
    enc.level = 1
    enc.observe(x, enc, sent=6_000, communicate_s=0.006)
    assert enc.propose(d, 0.010) == (2, pytest.approx(0.006 / 0.005))
    enc.level = 2
    # 100 ms of compute: the average is 52.5 ms, which fits even 30000 B; one step back.
    assert enc.propose(d, 0.110) == (1, pytest.approx(0.0006 / 0.0525))
    enc.target = 1e-3
    assert enc.propose(d, 0.115)[0] == 2  # nothing fits: the most compressed


def test_residual_rule_moves_one_level_at_a_time() -> None:
    enc = Adaptive(levels="0.5/0.1/0.01", rule="residual", low=1.0, high=4.0)
    assert enc.propose(100, None)[0] == 0  # no residual yet: stay
    enc.history.append((0, 0, float("nan")))
    codec = type("EF", (), {"residual": np.full(100, 0.5, np.float32)})()
    enc.observe(np.ones(100, np.float32), codec, sent=8, communicate_s=0.0)
    assert enc.propose(100, None) == (1, pytest.approx(0.5))
    enc.level = 1
    codec.residual[:] = 5.0
    enc.observe(np.ones(100, np.float32), codec, sent=8, communicate_s=0.0)
    assert enc.propose(100, None)[0] == 0
    fresh = Adaptive(rule="residual")
    fresh.history.append((0, 0, float("nan")))
    assert fresh.propose(100, None)[0] == len(fresh.values) - 1  # a non-leader abstains


@pytest.mark.parametrize(
    "spec,message",
    [
        ("adaptive:base=sign", "give knob="),
        ("adaptive:base=topk,knob=levels", "has no option 'levels'"),
        ("adaptive:levels=0.1//0.01", "/-separated"),
        ("adaptive:base=powersgd,knob=r,levels=2/1", "two stages"),
        ("adaptive:low=5,high=1", "above high"),
        ("adaptive:rule=fast", "one of time, residual"),
        ("adaptive:levels=2", "ratio"),
    ],
)
def test_bad_specs_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        get_encoder(spec)


def test_residual_rule_needs_error_feedback() -> None:
    with pytest.raises(UsageError, match="add --ef"):
        plan("adaptive:rule=residual")
    assert plan("adaptive:rule=residual", ef=True).path == "allgather"

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


def test_time_rule_picks_the_least_compressed_level_within_budget() -> None:
    """Link time per payload byte 1 µs, compute 5 ms, target 1: the budget fits 5000 bytes."""
    enc = Adaptive(levels="0.5/0.1/0.01")  # payloads of d=10000: 30000, 6000, 600 bytes
    d = 10_000
    assert enc.propose(d, 0.0) == (0, enc.propose(d, 0.0)[1])  # nothing measured yet
    enc.observe(np.ones(d, np.float32), enc, sent=30_000, communicate_s=0.03)
    level, ratio = enc.propose(d, 0.005 + 0.0)
    assert level == 2 and ratio == pytest.approx(600e-6 / 0.005)
    enc.observe(np.ones(d, np.float32), enc, sent=600, communicate_s=0.0006)
    assert enc.propose(d, 0.005 + 0.010)[0] == 1  # 10 ms of compute since: 6000 B fits
    enc.target = 100.0
    assert enc.propose(d, 0.015 + 1.0)[0] == 0


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

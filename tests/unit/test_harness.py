"""The timing harness's pure parts: sizes, iteration scaling, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt.bench.harness import SweepConfig, iterations_for, size_sweep, summarize
from hpcopt.errors import UsageError
from hpcopt.specs import format_size, parse_size, parse_spec


@pytest.mark.parametrize(
    "text,expected",
    [
        ("8", 8),
        ("0", 0),
        ("64K", 65536),
        ("16M", 16 << 20),
        ("2G", 2 << 30),
        ("1kib", 1024),
        ("3MB", 3 << 20),
        (" 4 ", 4),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "1.5M", "-5", "-1K", "8Q", "K"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_large_sizes_are_plain_ints() -> None:
    assert parse_size("4G") == 4 * 2**30 > 2**31


def test_size_sweep_doubles_and_includes_both_ends() -> None:
    assert size_sweep(8, 64, 2) == [8, 16, 32, 64]
    assert size_sweep(0, 4, 2) == [0, 1, 2, 4]
    assert size_sweep(5, 5, 1) == [5]
    assert size_sweep(1, 100, 10) == [1, 10, 100]


@pytest.mark.parametrize("args", [(64, 8, 2), (8, 64, 1), (8, 64, 0.5), (-1, 8, 2)])
def test_size_sweep_rejects(args: tuple) -> None:
    with pytest.raises(UsageError):
        size_sweep(*args)


def test_iterations_scale_down_only_above_one_mebibyte() -> None:
    cfg = SweepConfig(sizes=[], warmup=10, iters=100)
    assert iterations_for(1 << 20, cfg) == (10, 100)
    assert iterations_for(4 << 20, cfg) == (3, 25)
    assert iterations_for(1 << 30, cfg) == (2, 10)
    fixed = SweepConfig(sizes=[], warmup=10, iters=100, scale_iters=False)
    assert iterations_for(1 << 30, fixed) == (10, 100)


def test_summarize_cross_rank_statistics() -> None:
    times = np.array([[1.0, 3.0], [2.0, 6.0]])  # 2 ranks x 2 iterations
    stats = summarize(times, 8, bus_factor=1.0)
    assert stats["t_avg_s"] == pytest.approx(3.0)  # mean of per-rank means 2 and 4
    assert stats["t_min_s"] == 2.0 and stats["t_max_s"] == 4.0
    assert stats["t_p50_s"] == pytest.approx(4.0)  # slowest per iteration: 2, 6
    assert stats["algbw_GBps"] == pytest.approx(8 / 3.0 / 1e9)


def test_busbw_uses_the_bus_factor() -> None:
    stats = summarize(np.full((4, 3), 1e-3), 1_000_000, bus_factor=2 * 3 / 4)
    assert stats["algbw_GBps"] == pytest.approx(1.0)
    assert stats["busbw_GBps"] == pytest.approx(1.5)


def test_spec_and_size_formatting() -> None:
    assert parse_spec("topk:ratio=0.01,x=2", "encoder") == ("topk", {"ratio": "0.01", "x": "2"})
    assert format_size(16 << 20) == "16 MiB" and format_size(12) == "12 B"
    with pytest.raises(UsageError):
        parse_spec("topk:ratio", "encoder")


def test_whole_items_rounds_down_and_drops_repeats() -> None:
    from hpcopt.bench.harness import whole_items

    assert whole_items([0, 1, 4, 16, 20], 8) == [0, 16]
    assert whole_items([1, 2, 3], 1) == [1, 2, 3]


def test_aligned_buffers_start_on_64_bytes() -> None:
    from hpcopt.backend import ALIGN_BYTES, aligned_full

    for count in (0, 1, 3, 1000):
        arr = aligned_full(np, count, 7, "float64")
        assert arr.shape == (count,)
        assert count == 0 or arr.ctypes.data % ALIGN_BYTES == 0
        assert (arr == 7).all() and arr.dtype == np.float64

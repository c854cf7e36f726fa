"""Check data and comparisons for correctness passes: exact sums, mismatch counts, errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import Backend, to_host

__all__ = ["count_mismatches", "fill_check_data", "normal_data", "relative_error"]

_CHUNK = 1 << 22


def fill_check_data(buf: Any, rank: int, seed: int = 0) -> None:
    """Deterministic per-rank values in [-8, 8) on a 1/8 grid: sums are exact in any order."""
    xp_is_numpy = isinstance(buf, np.ndarray)
    for lo in range(0, buf.size, _CHUNK):
        hi = min(lo + _CHUNK, buf.size)
        rng = np.random.default_rng([seed, rank, buf.size, lo])
        ints = rng.integers(-64, 64, hi - lo)
        vals = (ints / 8 if buf.dtype.kind == "f" else ints).astype(buf.dtype)
        if xp_is_numpy:
            buf[lo:hi] = vals
        else:
            buf[lo:hi].set(vals)


def count_mismatches(got: Any, want: Any) -> int:
    """Elements that differ (NaN never equals), counted in chunks to bound memory."""
    wrong = 0
    for lo in range(0, got.size, _CHUNK):
        hi = min(lo + _CHUNK, got.size)
        wrong += int((got[lo:hi] != want[lo:hi]).sum())
    return wrong


def normal_data(backend: Backend, count: int, rank: int, seed: int = 1) -> Any:
    """Gradient-like float32 data: standard normal, drawn from (seed, rank, count)."""
    values = np.random.default_rng([seed, rank, count]).standard_normal(count, np.float32)
    return backend.xp.asarray(values)


def relative_error(got: Any, exact: np.ndarray) -> float:
    """‖got − exact‖ / ‖exact‖ in float64 (0 when both are zero)."""
    diff = np.linalg.norm(to_host(got).astype(np.float64) - exact)
    norm = np.linalg.norm(exact)
    return float(diff / norm) if norm > 0 else float(diff)

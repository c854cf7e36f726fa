"""Check data and comparisons for correctness passes: exact sums, mismatch counts, errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import Backend, to_host

__all__ = [
    "check_block",
    "count_mismatches",
    "fill_check_data",
    "normal_data",
    "relative_error",
]

_CHUNK = 1 << 22


def fill_check_data(buf: Any, rank: int, seed: int = 0) -> None:
    """Deterministic per-rank values in [-8, 8) on a 1/8 grid (integers in [-64, 64) for
    integer types): sums are exact in any order."""
    for lo in range(0, buf.size, _CHUNK):
        hi = min(lo + _CHUNK, buf.size)
        rng = np.random.default_rng([seed, rank, buf.size, lo])
        ints = np.frombuffer(rng.bytes(hi - lo), np.int8) >> 1  # uniform in [-64, 64)
        scale = 0.125 if buf.dtype.kind == "f" else 1
        if isinstance(buf, np.ndarray):
            np.multiply(ints, scale, out=buf[lo:hi], casting="unsafe")
        else:
            buf[lo:hi].set((ints * scale).astype(buf.dtype))


def check_block(count: int, dtype: Any, rank: int, block: int) -> np.ndarray:
    """Block ``block`` of rank ``rank``'s check data: what every rank can regenerate."""
    out = np.empty(count, dtype)
    fill_check_data(out, rank, seed=block + 1)
    return out


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

"""The F16C half-precision helpers agree bit for bit with NumPy's conversions."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt import halfcast

needs_ext = pytest.mark.skipif(halfcast._EXT is None, reason="F16C extension not built here")


def samples(n: int, seed: int) -> np.ndarray:
    """Normal values across float16's range: subnormals, normals, near overflow, signed zeros."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-9, 3.5, n)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    x[: min(n, 4)] = np.array([0.0, -0.0, 6e-8, 65504.0], np.float32)[: min(n, 4)]
    return x


@needs_ext
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 100_003])
def test_to_half_matches_numpy(n: int) -> None:
    x = samples(n, n)
    got = np.empty(n, np.float16)
    top, nan = halfcast.to_half(x, got)
    assert got.view(np.uint16).tolist() == x.astype(np.float16).view(np.uint16).tolist()
    assert not nan and top == (float(np.abs(x).max()) if n else 0.0)


@needs_ext
@pytest.mark.parametrize("where", [0, 5, 8, 1002])
def test_nan_is_reported_wherever_it_is(where: int) -> None:
    x = samples(1003, 1)
    x[where] = np.nan
    assert halfcast.to_half(x, np.empty(x.size, np.float16))[1]


@needs_ext
@pytest.mark.parametrize("n", [1, 9, 4099])
def test_from_half_and_add_half_match_numpy(n: int) -> None:
    a = samples(n, 2).astype(np.float16)
    b = samples(n, 3).astype(np.float16)
    wide = np.empty(n, np.float32)
    halfcast.from_half(a, wide)
    assert np.array_equal(wide, a.astype(np.float32))
    total = a.copy()
    halfcast.add_half(total, b)
    with np.errstate(over="ignore"):  # 65504 + 65504 is Inf in both
        expected = a + b
    assert total.view(np.uint16).tolist() == expected.view(np.uint16).tolist()


def test_numpy_fallback_gives_the_same_answers() -> None:
    x = samples(1001, 4)
    x[10] = np.nan
    out = np.empty(x.size, np.float16)
    top, nan = halfcast.to_half(x, out)
    assert nan and top == 65504.0
    strided = x[::2]  # not contiguous: always the NumPy path
    half = np.empty(strided.size, np.float16)
    top, nan = halfcast.to_half(strided, half)
    assert np.array_equal(half, strided.astype(np.float16), equal_nan=True)


def test_mismatched_lengths_are_rejected() -> None:
    if halfcast._EXT is None:
        pytest.skip("F16C extension not built here")
    with pytest.raises(ValueError):
        halfcast._EXT.to_half(np.zeros(4, np.float32), np.zeros(3, np.float16))

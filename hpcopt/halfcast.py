"""float32 <-> float16 conversion and float16 addition: F16C when built, NumPy otherwise.

NumPy converts to float16 element by element (about 1 GB/s, and some 25x slower for
results in float16's subnormal range, where gradients often are) and adds float16
arrays the same way. The optional extension ``hpcopt._halfcast`` does all three with
the x86 F16C instructions, bit for bit the same results. ``HPCOPT_NO_F16C=1`` forces
the NumPy path.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["add_half", "fast", "from_half", "to_half"]


def _load() -> ModuleType | None:
    if os.environ.get("HPCOPT_NO_F16C", "") not in ("", "0"):
        return None
    try:
        from hpcopt import _halfcast  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _halfcast if _halfcast.supported() else None


_EXT = _load()


def fast(*arrays: Any) -> bool:
    """True when the F16C path applies: extension present and all arrays contiguous host."""
    return _EXT is not None and all(
        isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays
    )


def to_half(src: Any, dst: Any) -> tuple[float, bool]:
    """dst = float16(src), round to nearest even; returns (max |src|, any NaN)."""
    if fast(src, dst):
        return _EXT.to_half(src, dst)  # type: ignore[union-attr]
    with np.errstate(over="ignore", invalid="ignore"):
        dst[...] = src
        nan = bool(np.isnan(src).any())
        top = float(np.nanmax(np.abs(src), initial=0.0))
    return top, nan


def from_half(src: Any, dst: Any) -> None:
    """dst = float32(src)."""
    if fast(src, dst):
        _EXT.from_half(src, dst)  # type: ignore[union-attr]
    else:
        dst[...] = src


def add_half(dst: Any, src: Any) -> None:
    """dst += src for float16 arrays (float32 add, rounded to nearest even)."""
    if fast(dst, src):
        _EXT.add_half(dst, src)  # type: ignore[union-attr]
    else:
        np.add(dst, src, out=dst)

"""The encoder kernels behind one interface: compiled C, CUDA (CuPy) or the NumPy reference.

Host arrays go to the optional extension ``hpcopt._codecs`` when it was built (and
``HPCOPT_NO_CODECS`` is unset or 0), else to :mod:`hpcopt.encoders.reference`; device
arrays go to :mod:`hpcopt.encoders.gpu`. All three give the same bits (the reference
module documents the arguments).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from hpcopt.backend import is_device_array
from hpcopt.encoders import reference

__all__ = [
    "compiled",
    "dequantize",
    "elias_decode",
    "elias_encode",
    "natural_decode",
    "natural_encode",
    "pick_top",
    "quantize",
    "scatter_add",
    "select_above",
    "sign_pack",
    "two_values",
]


def _load() -> ModuleType | None:
    if os.environ.get("HPCOPT_NO_CODECS", "") not in ("", "0"):
        return None
    try:
        from hpcopt import _codecs  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _codecs


_EXT = _load()


def compiled() -> bool:
    """Whether host arrays use the compiled kernels."""
    return _EXT is not None


def _pick(first: Any, *arrays: Any) -> Any:
    """gpu for device arrays, the extension for contiguous host arrays, else the reference."""
    if is_device_array(first):
        from hpcopt.encoders import gpu

        return gpu
    if _EXT is not None and all(a.flags.c_contiguous for a in (first, *arrays)):
        return _EXT
    return reference


def sign_pack(x: Any, bits: Any) -> None:
    """``bits[:ceil(n/8)] = packbits(x < 0)``."""
    _pick(x, bits).sign_pack(x, bits)


def two_values(bits: Any, pos: float, neg: float, out: Any, add: bool) -> None:
    """``out (+)= neg where the packed bit is 1, else pos``."""
    _pick(out, bits).two_values(bits, pos, neg, out, add)


def quantize(
    x: Any, scales: Any, bucket: int, levels: int, key: int, start: int, planes: Any, stride: int
) -> None:
    """Stochastic levels min(floor(|x|·scale + u·2⁻¹⁶), levels) into sign + level planes."""
    _pick(x, scales, planes).quantize(x, scales, bucket, levels, key, start, planes, stride)


def dequantize(
    planes: Any, stride: int, mag_bits: int, norms: Any, divisor: float, bucket: int, start: int,
    out: Any, weight: float = 1.0, add: bool = False,
) -> None:  # fmt: skip
    """``out (+)= weight·(±(level·norm/divisor))`` for elements start..start+out.size."""
    impl = _pick(out, planes, norms)
    impl.dequantize(planes, stride, mag_bits, norms, divisor, bucket, start, out, weight, add)


def natural_encode(x: Any, key: int, start: int, signs: Any, exps: Any) -> int:
    """Sign plane and randomly rounded exponent bytes; returns the largest exponent."""
    return int(_pick(x, signs, exps).natural_encode(x, key, start, signs, exps))


def natural_decode(
    signs: Any, exps: Any, start: int, out: Any, weight: float = 1.0, add: bool = False
) -> None:
    """``out (+)= weight·(±2^(e−127))`` for elements start..start+out.size."""
    _pick(out, signs, exps).natural_decode(signs, exps, start, out, weight, add)


def select_above(x: Any, thr: float, idx: Any) -> tuple[int, bool]:
    """Indices with |x| >= thr (increasing) into int64 ``idx``; (total count, all finite)."""
    count, finite = _pick(x, idx).select_above(x, thr, idx)
    return int(count), bool(finite)


def pick_top(mags: Any, cand: Any, v: float, k: int, out: Any) -> int:
    """Of increasing ``cand`` with magnitudes ``mags`` (|x| at each), every one above v,
    then the first equal to v: k in all, into ``out`` in increasing order."""
    return int(_pick(mags, cand, out).pick_top(mags, cand, v, k, out))


def elias_encode(x: Any, c: float, key: int, out: Any) -> int:
    """The compiled QSGD-Elias coder (hpcopt/encoders/elias.py): bytes written into uint8
    ``out``, or minus the bytes it needs."""
    return int(_EXT.elias_encode(x, c, key, out))  # type: ignore[union-attr]


def elias_decode(stream: Any, scale: float, out: Any, weight: float, add: bool) -> None:
    """``out (+)= weight·decoded`` with the compiled QSGD-Elias decoder."""
    _EXT.elias_decode(stream, scale, out, weight, add)  # type: ignore[union-attr]


def scatter_add(idx: Any, delta: bool, values: Any, out: Any, weight: float = 1.0) -> None:
    """``out[idx] += weight·values`` (unique indices; ``delta``: idx holds gaps)."""
    impl = _pick(out, idx, values)
    if impl is _EXT:
        _EXT.scatter_add(idx, idx.dtype.itemsize, delta, values, out, weight)
    else:
        impl.scatter_add(idx, delta, values, out, weight)

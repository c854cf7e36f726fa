"""The encoder kernels on CuPy arrays: CUDA kernels with the NumPy reference's bits.

Same arguments as :mod:`hpcopt.encoders.reference`. Floating-point steps use the
``__fmul_rn``/``__fadd_rn``/``__fdiv_rn`` intrinsics, which the compiler never fuses into
a multiply-add, so every value rounds as it does on the host. Compiled on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from hpcopt.encoders.reference import pick_top, scatter_add  # array-generic

__all__ = [
    "dequantize",
    "natural_decode",
    "natural_encode",
    "pick_top",
    "quantize",
    "scatter_add",
    "select_above",
    "sign_pack",
    "two_values",
]

THREADS = 256

SOURCE = r"""
typedef unsigned long long u64;
typedef unsigned int u32;

__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Stream number j of key (SplitMix64 of counter j + 1); chunk g is 16 bits of word g/4. */
__device__ __forceinline__ u32 chunk16(u64 key, u64 g) {
    u64 w = mix64(key + ((g >> 2) + 1ULL) * 0x9E3779B97F4A7C15ULL);
    return (u32)(w >> (16 * (g & 3ULL))) & 0xFFFFu;
}

__device__ __forceinline__ int bit_at(const unsigned char* plane, long long g) {
    return (plane[g >> 3] >> (7 - (g & 7))) & 1;
}

extern "C" __global__ void sign_pack(const float* x, long long n, unsigned char* bits) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j * 8 >= n) return;
    unsigned char b = 0;
    for (int i = 0; i < 8 && j * 8 + i < n; i++)
        b |= (unsigned char)((x[j * 8 + i] < 0.0f) << (7 - i));
    bits[j] = b;
}

extern "C" __global__ void two_values(const unsigned char* bits, float pos, float neg, float* out,
                                      long long n, int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = bit_at(bits, i) ? neg : pos;
    out[i] = add ? __fadd_rn(out[i], v) : v;
}

/* One thread per 8 elements (one byte of every plane). */
extern "C" __global__ void quantize(const float* x, long long n, const float* scales,
                                    long long bucket, u32 levels, int mag_bits, u64 key,
                                    long long start, unsigned char* planes, long long stride) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j * 8 >= n) return;
    float top = (float)levels;
    u32 lev[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    unsigned char sbyte = 0;
    for (int i = 0; i < 8 && j * 8 + i < n; i++) {
        long long g = start + j * 8 + i;
        float v = x[j * 8 + i];
        float u = __fmul_rn((float)(int)chunk16(key, (u64)g), (1.0f / 65536.0f));
        float r = __fadd_rn(__fmul_rn(fabsf(v), scales[g / bucket]), u);
        lev[i] = (u32)(int)(r < top ? r : top);
        sbyte |= (unsigned char)((v < 0.0f) << (7 - i));
    }
    long long byte = start / 8 + j;
    planes[byte] = sbyte;
    for (int b = 0; b < mag_bits; b++) {
        unsigned char pb = 0;
        for (int i = 0; i < 8; i++)
            pb |= (unsigned char)(((lev[i] >> b) & 1u) << (7 - i));
        planes[(1 + b) * stride + byte] = pb;
    }
}

extern "C" __global__ void dequantize(const unsigned char* planes, long long stride, int mag_bits,
                                      const float* norms, float divisor, long long bucket,
                                      long long start, float* out, long long n, float weight,
                                      int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long g = start + i;
    u32 lev = 0;
    for (int b = 0; b < mag_bits; b++)
        lev |= (u32)bit_at(planes + (1 + b) * stride, g) << b;
    float q = __fdiv_rn(norms[g / bucket], divisor);
    float v = __fmul_rn(weight, __fmul_rn((float)(int)lev, q));
    if (bit_at(planes, g)) v = -v;
    out[i] = add ? __fadd_rn(out[i], v) : v;
}

extern "C" __global__ void natural_encode(const float* x, long long n, u64 key, long long start,
                                          unsigned char* exps, u32* top) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 t = ((__float_as_uint(x[i]) & 0x7FFFFFFFu) + (chunk16(key, (u64)(start + i)) << 7)) >> 23;
    exps[start + i] = (unsigned char)t;
    atomicMax(top, t);
}

extern "C" __global__ void natural_decode(const unsigned char* signs, const unsigned char* exps,
                                          long long start, float* out, long long n, float weight,
                                          int add) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long g = start + i;
    u32 bits = ((u32)bit_at(signs, g) << 31) | ((u32)exps[g] << 23);
    float v = __fmul_rn(weight, __uint_as_float(bits));
    out[i] = add ? __fadd_rn(out[i], v) : v;
}
"""


@functools.cache
def _module() -> Any:
    import cupy

    return cupy.RawModule(code=SOURCE, options=("--std=c++14",))


def _launch(name: str, count: int, *args: Any) -> None:
    """Run kernel ``name`` with one thread per item (``count`` items)."""
    if count <= 0:
        return
    blocks = (count + THREADS - 1) // THREADS
    _module().get_function(name)((blocks,), (THREADS,), args)


def sign_pack(x: Any, bits: Any) -> None:
    """``bits[:ceil(n/8)] = packbits(x < 0)``."""
    n = x.size
    _launch("sign_pack", (n + 7) // 8, x, np.int64(n), bits)


def two_values(bits: Any, pos: float, neg: float, out: Any, add: bool) -> None:
    """``out (+)= neg where the bit is 1 else pos``."""
    n = out.size
    _launch("two_values", n, bits, np.float32(pos), np.float32(neg), out, np.int64(n),
            np.int32(add))  # fmt: skip


def quantize(
    x: Any, scales: Any, bucket: int, levels: int, key: int, start: int, planes: Any, stride: int
) -> None:
    """lev = floor(min(|x|·scale + u·2⁻¹⁶, levels)); planes: sign, then bits of lev."""
    n = x.size
    _launch("quantize", (n + 7) // 8, x, np.int64(n), scales, np.int64(bucket),
            np.uint32(levels), np.int32(int(levels).bit_length()), np.uint64(key),
            np.int64(start), planes, np.int64(stride))  # fmt: skip


def dequantize(
    planes: Any, stride: int, mag_bits: int, norms: Any, divisor: float, bucket: int, start: int,
    out: Any, weight: float, add: bool,
) -> None:  # fmt: skip
    """``out (+)= weight·(±(float(lev)·q))``, q = norms[bucket] / divisor."""
    n = out.size
    _launch("dequantize", n, planes, np.int64(stride), np.int32(mag_bits), norms,
            np.float32(divisor), np.int64(bucket), np.int64(start), out, np.int64(n),
            np.float32(weight), np.int32(add))  # fmt: skip


def natural_encode(x: Any, key: int, start: int, signs: Any, exps: Any) -> int:
    """Exponent bytes and sign plane; the largest exponent."""
    import cupy

    n = x.size
    top = cupy.zeros(1, dtype=cupy.uint32)
    _launch("natural_encode", n, x, np.int64(n), np.uint64(key), np.int64(start), exps, top)
    sign_pack(x, signs[start // 8 :])
    return int(top[0])


def natural_decode(signs: Any, exps: Any, start: int, out: Any, weight: float, add: bool) -> None:
    """``out (+)= weight·(±2^(e−127))``."""
    n = out.size
    _launch("natural_decode", n, signs, exps, np.int64(start), out, np.int64(n),
            np.float32(weight), np.int32(add))  # fmt: skip


def select_above(x: Any, thr: float, idx: Any) -> tuple[int, bool]:
    """Indices with |x| >= thr into ``idx`` (the first idx.size of them); (count, finite)."""
    import cupy

    a = cupy.abs(x)
    finite = bool(cupy.isfinite(a).all()) if x.size else True
    found = cupy.flatnonzero(a >= np.float32(thr))
    room = min(int(found.size), idx.size)
    idx[:room] = found[:room]
    return int(found.size), finite

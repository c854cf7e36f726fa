"""The compiled and CUDA encoder kernels give the NumPy reference's bits exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hpcopt.backend import cupy_or_none
from hpcopt.encoders import kernels, reference
from hpcopt.encoders.rng import random_u16, random_u64

SIZES = [0, 1, 7, 8, 9, 513, 70_001]


def data(n: int, seed: int = 0) -> np.ndarray:
    """Normal values with exact zeros, negative zeros and ties mixed in."""
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    x[::17] = 0.0
    x[5::19] = -0.0
    x[3::23] = 1.5
    return x


def backends() -> list[tuple[str, Any, Callable[[np.ndarray], Any], Callable[[Any], Any]]]:
    """(name, kernel module, to its arrays, back to NumPy) for every non-reference backend."""
    found = []
    if kernels._EXT is not None:
        found.append(("compiled", kernels._EXT, lambda a: a, lambda a: a))
    cp = cupy_or_none()
    if cp is not None:
        from hpcopt.encoders import gpu

        found.append(("cuda", gpu, cp.asarray, lambda a: a.get()))
    return found


BACKENDS = backends()
pytestmark = pytest.mark.skipif(not BACKENDS, reason="neither the extension nor a GPU is here")


@pytest.fixture(params=BACKENDS, ids=[b[0] for b in BACKENDS])
def impl(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_random_bits_match_splitmix() -> None:
    """The reference stream is SplitMix64 (first outputs from seed 0, computed by hand)."""
    want = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert [int(v) for v in random_u64(0, 0, np.empty(3, np.uint64))] == want
    assert np.array_equal(random_u16(5, 6, 9), random_u16(5, 0, 20)[6:15])


def test_compiled_random_bits() -> None:
    if kernels._EXT is None:
        pytest.skip("no compiled kernels")
    got = np.empty(101, np.uint16)
    kernels._EXT.u16(123456789, 13, got)
    assert np.array_equal(got, random_u16(123456789, 13, 101))


@pytest.mark.parametrize("n", SIZES)
def test_sign_pack_and_two_values(impl: Any, n: int) -> None:
    _, mod, dev, host = impl
    x = data(n)
    want = np.zeros((n + 7) // 8, np.uint8)
    reference.sign_pack(x, want)
    bits = dev(np.full_like(want, 0xAA))
    mod.sign_pack(dev(x), bits)
    assert np.array_equal(host(bits), want)
    for add in (False, True):
        ref = data(n, 1)
        reference.two_values(want, 0.37, -1.25, ref, add)
        out = dev(data(n, 1))
        mod.two_values(dev(want), 0.37, -1.25, out, add)
        assert np.array_equal(host(out), ref)


@pytest.mark.parametrize("levels,bucket", [(15, 512), (1, 1 << 30), (127, 64), (300, 8), (3, 5)])
@pytest.mark.parametrize("n", SIZES)
def test_quantize_dequantize(impl: Any, n: int, levels: int, bucket: int) -> None:
    _, mod, dev, host = impl
    x = data(n, 2)
    buckets = max(1, -(-n // bucket))
    scales = np.random.default_rng(3).uniform(0.5, 9.0, buckets).astype(np.float32)
    mag_bits, stride = levels.bit_length(), (n + 7) // 8
    want = np.zeros((1 + mag_bits) * stride, np.uint8)
    reference.quantize(x, scales, bucket, levels, 99, 0, want, stride)
    planes = dev(np.zeros_like(want))
    mod.quantize(dev(x), dev(scales), bucket, levels, 99, 0, planes, stride)
    assert np.array_equal(host(planes), want)
    start = 8 * (n // 24)  # a block inside the vector, as the fused decode-and-sum uses
    for weight, add in ((1.0, False), (0.3, True)):
        ref = data(n - start, 4)
        reference.dequantize(want, stride, mag_bits, scales, 7.0, bucket, start, ref, weight, add)
        out = dev(data(n - start, 4))
        mod.dequantize(dev(want), stride, mag_bits, dev(scales), 7.0, bucket, start, out, weight,
                       add)  # fmt: skip
        assert np.array_equal(host(out), ref)


@pytest.mark.parametrize("n", SIZES)
def test_natural(impl: Any, n: int) -> None:
    _, mod, dev, host = impl
    x = data(n, 5)
    x[::29] = 3.0e38  # rounds beyond float32 with some probability
    want_s, want_e = np.zeros((n + 7) // 8, np.uint8), np.zeros(n, np.uint8)
    top = reference.natural_encode(x, 7, 0, want_s, want_e)
    signs, exps = dev(np.zeros_like(want_s)), dev(np.zeros_like(want_e))
    assert mod.natural_encode(dev(x), 7, 0, signs, exps) == top
    assert np.array_equal(host(signs), want_s) and np.array_equal(host(exps), want_e)
    for start, weight, add in ((0, 1.0, False), (8 * (n // 16), -0.5, True)):
        ref = data(n - start, 6)
        reference.natural_decode(want_s, want_e, start, ref, weight, add)
        out = dev(data(n - start, 6))
        mod.natural_decode(dev(want_s), dev(want_e), start, out, weight, add)
        assert np.array_equal(host(out), ref)


@pytest.mark.parametrize("n", SIZES)
def test_sparse(impl: Any, n: int) -> None:
    _name, mod, dev, host = impl
    x = data(n, 8)
    cap = max(1, n // 10)
    for thr in (0.0, 1.5, 2.0, 9.0):
        want = np.full(cap, -1, np.int64)
        count, finite = reference.select_above(x, thr, want)
        got = dev(np.full(cap, -1, np.int64))
        assert tuple(mod.select_above(dev(x), thr, got)) == (count, finite)
        assert np.array_equal(host(got), want)
    cand = np.flatnonzero(np.abs(x) >= 1.0)
    mags = np.abs(x[cand])
    for k in {0, cand.size // 3, cand.size}:
        v = float(np.sort(np.abs(x[cand]))[::-1][k - 1]) if k else np.inf
        want = np.full(max(k, 1), -1, np.int64)
        wrote = reference.pick_top(mags, cand, v, k, want)
        got = dev(np.full(max(k, 1), -1, np.int64))
        assert mod.pick_top(dev(mags), dev(cand), v, k, got) == wrote == k
        assert np.array_equal(host(got), want)
    idx = np.flatnonzero(x > 1.0).astype(np.uint32)
    gaps = np.diff(idx, prepend=0).astype(np.uint32)
    vals = x[idx]
    for ix, delta in ((idx, False), (gaps, True)):
        ref = data(n, 9)
        reference.scatter_add(ix, delta, vals, ref, 0.75)
        out = dev(data(n, 9))
        kernels.scatter_add(dev(ix), delta, dev(vals), out, 0.75)
        assert np.array_equal(host(out), ref)


def test_finite_flag(impl: Any) -> None:
    _, mod, dev, _ = impl
    for bad in (np.nan, np.inf, -np.inf):
        x = data(100)
        x[50] = bad
        assert mod.select_above(dev(x), 1.0, dev(np.zeros(100, np.int64)))[1] is False


def test_scalar_path_without_avx2() -> None:
    """HPCOPT_NO_AVX2=1 runs the compiled kernels' scalar code: the same bits again."""
    if kernels._EXT is None:
        pytest.skip("no compiled kernels")
    import subprocess
    import sys

    code = (
        "import numpy as np; from hpcopt.encoders import kernels, reference as r\n"
        "x = np.random.default_rng(1).standard_normal(70001).astype(np.float32)\n"
        "sc = np.random.default_rng(2).uniform(1, 9, 137).astype(np.float32)\n"
        "a, b = np.zeros(5 * 8751, np.uint8), np.zeros(5 * 8751, np.uint8)\n"
        "r.quantize(x, sc, 512, 15, 3, 0, a, 8751)\n"
        "kernels.quantize(x, sc, 512, 15, 3, 0, b, 8751)\n"
        "o, p = np.ones(70001, np.float32), np.ones(70001, np.float32)\n"
        "r.dequantize(a, 8751, 4, sc, 15.0, 512, 0, o, 0.5, True)\n"
        "kernels.dequantize(a, 8751, 4, sc, 15.0, 512, 0, p, 0.5, True)\n"
        "assert np.array_equal(a, b) and np.array_equal(o, p)\n"
    )
    env = {**__import__("os").environ, "HPCOPT_NO_AVX2": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 70_001])
def test_elias_coder(n: int) -> None:
    """The compiled QSGD-Elias coder writes and reads the reference's stream."""
    if kernels._EXT is None:
        pytest.skip("no compiled kernels")
    from hpcopt.encoders.elias import decode_stream, encode_stream

    x = data(n, 11)
    c = 37.5 if n else 0.0
    want = encode_stream(x, c, 21)
    room = np.zeros(64 + 2 * n, np.uint8)
    assert kernels.elias_encode(x, c, 21, room[:1]) == (-want.size if want.size > 1 else 1)
    got = kernels.elias_encode(x, c, 21, room)
    assert got == want.size and np.array_equal(room[:got], want)
    for weight, add in ((1.0, False), (-0.5, True)):
        ref = data(n, 12)
        if add:
            ref += np.float32(weight) * decode_stream(want, n, 0.01)
        else:
            ref = decode_stream(want, n, 0.01)
        out = data(n, 12)
        kernels.elias_decode(want, 0.01, out, weight, add)
        assert np.array_equal(out, ref)
    if n > 100:
        with pytest.raises(ValueError, match="malformed"):
            kernels.elias_decode(want[: want.size // 2], 0.01, data(n), 1.0, False)

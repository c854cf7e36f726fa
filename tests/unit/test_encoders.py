"""Serial properties of the payload encoders: round trips, wire sizes, bias, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hpcopt.backend import cupy_or_none
from hpcopt.encoders import Encoder, Payload, available, get_encoder, register
from hpcopt.encoders.bitpack import pack, packed_nbytes, unpack
from hpcopt.encoders.qsgd import variance_factor
from hpcopt.errors import UsageError

SPECS = [*available(), "qsgd:levels=127,bucket=64", "topk:ratio=0.1,delta=1", "randomk:scaled=1"]

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
vectors = st.one_of(
    arrays(np.float32, st.integers(0, 70), elements=finite),
    arrays(np.float32, st.sampled_from([0, 1, 7, 513, 1025]), elements=finite),
)


def raw_bytes(payload: Payload) -> np.ndarray:
    """The payload as the receiver gets it: one uint8 buffer."""
    if not payload.buffers:
        return np.zeros(0, np.uint8)
    return np.concatenate([b.reshape(-1).view(np.uint8) for b in payload.buffers])


def big(d: int, seed: int = 0) -> np.ndarray:
    """A standard normal float32 vector."""
    return np.random.default_rng(seed).standard_normal(d).astype(np.float32)


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=25, deadline=None)
@given(x=vectors, step=st.integers(0, 3))
def test_round_trip(spec: str, x: np.ndarray, step: int) -> None:
    """Decode gives float32 of the input's shape; the bytes alone decode the same."""
    enc = get_encoder(spec, seed=1)
    payload = enc.encode(x, step)
    y = enc.decode(payload)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    sizes = [b.itemsize for b in payload.buffers]
    assert sizes == sorted(sizes, reverse=True)
    assert all(b.flags.c_contiguous for b in payload.buffers)
    wire = enc.wire_bytes(x.size)
    assert wire is None or wire == payload.nbytes
    again = enc.from_bytes(raw_bytes(payload), x.shape, step)
    assert np.array_equal(enc.decode(again), y)


@pytest.mark.parametrize("spec", SPECS)
def test_large_round_trip(spec: str) -> None:
    """A large odd size decodes the same from the wire bytes."""
    enc = get_encoder(spec)
    x = big(100_003)
    payload = enc.encode(x, 5)
    assert np.array_equal(enc.decode(enc.from_bytes(raw_bytes(payload), x.shape, 5)),
                          enc.decode(payload))  # fmt: skip


BLOCKED = [
    "sign", "fp16", "qsgd", "qsgd:levels=127,bucket=64", "natural", "topk", "dgc", "terngrad",
]  # fmt: skip


@pytest.mark.parametrize("spec", BLOCKED)
def test_blocking_does_not_change_results(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small cache blocks give the same payload as one block (up to the sum's rounding)."""
    import hpcopt.encoders.base as base
    import hpcopt.encoders.qsgd as qsgd
    from hpcopt import halfcast

    monkeypatch.setattr(halfcast, "_EXT", None)  # F16C converts fp16 in one call, unblocked
    x = big(5003, 8)
    whole = get_encoder(spec).decode(get_encoder(spec).encode(x, 2))
    monkeypatch.setattr(base, "BLOCK", 128)
    monkeypatch.setattr(qsgd, "BLOCK", 128)
    enc = get_encoder(spec)
    assert np.allclose(enc.decode(enc.encode(x, 2)), whole, rtol=1e-6, atol=0)


@settings(max_examples=25, deadline=None)
@given(x=vectors)
def test_exact_and_rounding_encoders(x: np.ndarray) -> None:
    """none is exact; fp16 and bf16 round to nearest within half an ulp."""
    assert np.array_equal(get_encoder("none").decode(get_encoder("none").encode(x)), x)
    fp16 = get_encoder("fp16")
    assert np.array_equal(fp16.decode(fp16.encode(x)), x.astype(np.float16).astype(np.float32))
    bf16 = get_encoder("bf16")
    y = bf16.decode(bf16.encode(x))
    assert np.all(np.abs(y - x) <= np.abs(x) * 2.0**-8 + 2.0**-134)  # subnormal spacing


@settings(max_examples=25, deadline=None)
@given(x=vectors)
def test_sign_natural_values(x: np.ndarray) -> None:
    """sign decodes to ±‖x‖₁/d; natural to a neighbouring power of two of the same sign."""
    sign = get_encoder("sign")
    y = sign.decode(sign.encode(x))
    if x.size:
        scale = np.float32(np.abs(x).sum(dtype=np.float64) / x.size)
        assert np.allclose(np.abs(y), scale, rtol=1e-5)
        assert np.all((y < 0) == (x < 0)) or scale == 0
    nat = get_encoder("natural")
    z = nat.decode(nat.encode(x))
    nz = np.abs(x) >= 2.0**-126  # subnormals round to 0 or 2**-126
    lo = np.exp2(np.floor(np.log2(np.abs(x[nz]))))
    assert np.all((np.abs(z[nz]) == lo) | (np.abs(z[nz]) == 2 * lo))
    assert np.all(np.sign(z[nz]) == np.sign(x[nz]))
    assert np.all(np.isin(np.abs(z[~nz]), [0, 2.0**-126])) and not z[x == 0].any()


@pytest.mark.parametrize(
    ("spec", "d", "expect"),
    [
        ("none", 1001, 4004),
        ("fp16", 1001, 2002),
        ("bf16", 1001, 2002),
        ("sign", 1001, 4 + 126),
        ("natural", 1001, 126 + 1001),
        ("terngrad", 1001, 4 + 2 * 126),
        ("qsgd:levels=15,bucket=512", 1001, 2 * 4 + 5 * 126),
        ("qsgd:levels=16,bucket=512", 1001, 2 * 4 + 6 * 126),
        ("topk:ratio=0.01", 1001, 11 * (4 + 2)),
        ("topk:ratio=0.01", 100, 1 * (4 + 1)),
        ("topk:ratio=0.001", 70_000, 70 * (4 + 4)),
        ("randomk:ratio=0.1", 1001, 4 * 101),
        ("powersgd:r=2", 1000, 4 * 2 * (32 + 32)),
    ],
)
def test_wire_bytes(spec: str, d: int, expect: int) -> None:
    """Payload sizes follow the formulas."""
    enc = get_encoder(spec)
    assert enc.wire_bytes(d) == expect
    assert enc.encode(big(d)).nbytes == expect


def test_qsgd_unbiased_and_variance() -> None:
    """The mean of many QSGD encodings converges to x; the variance bound holds."""
    d, s = 64, 4
    enc = get_encoder(f"qsgd:levels={s},bucket={d}")
    x = big(d, 3)
    ys = np.array([enc.decode(enc.encode(x, step)) for step in range(3000)])
    assert np.linalg.norm(ys.mean(axis=0) - x) < 0.05 * np.linalg.norm(x)
    err = np.mean(np.sum((ys - x) ** 2, axis=1))
    assert err <= variance_factor(d, s) * float(x @ x)


@pytest.mark.parametrize("spec", ["natural", "terngrad:clip=0", "randomk:ratio=0.25,scaled=1"])
def test_other_unbiased(spec: str) -> None:
    """Encoders that claim unbiasedness average to the input."""
    enc = get_encoder(spec)
    assert enc.unbiased
    x = big(64, 4)
    mean = np.mean([enc.decode(enc.encode(x, step)) for step in range(3000)], axis=0)
    assert np.linalg.norm(mean - x) < 0.1 * np.linalg.norm(x)


@pytest.mark.parametrize("d", [1000, 10_000, 100_000])
def test_qsgd_elias_bits(d: int) -> None:
    """With s = √d the Elias-coded payload averages within 2.8d + 32 bits (an expectation)."""
    enc = get_encoder("qsgd-elias")
    bits = [8 * enc.encode(big(d, seed), seed).nbytes for seed in range(5)]
    assert np.mean(bits) <= 2.8 * d + 32


@pytest.mark.parametrize(("d", "ratio"), [(1000, 0.01), (200_000, 0.01), (50_000, 0.3)])
def test_topk_exact(d: int, ratio: float) -> None:
    """Exactly the k largest magnitudes survive, with their values."""
    x = big(d, 9)
    enc = get_encoder(f"topk:ratio={ratio}")
    y = enc.decode(enc.encode(x))
    k = math.ceil(ratio * d)
    keep = np.sort(np.argsort(-np.abs(x), kind="stable")[:k])
    assert np.array_equal(np.flatnonzero(y), keep)
    assert np.array_equal(y[keep], x[keep])


def test_topk_ties() -> None:
    """Ties and zeros still give exactly k entries."""
    x = np.zeros(10_000, np.float32)
    x[::7] = 1.0
    enc = get_encoder("topk:ratio=0.3")
    payload = enc.encode(x)
    assert payload.buffers[0].size == 3000
    assert np.count_nonzero(enc.decode(payload)) == np.count_nonzero(x)


def test_dgc_count_near_k() -> None:
    """DGC's sampled threshold keeps roughly k entries, the largest ones."""
    x = big(100_000, 2)
    enc = get_encoder("dgc:ratio=0.01")
    y = enc.decode(enc.encode(x))
    kept = np.flatnonzero(y)
    assert 500 <= kept.size <= 2000
    assert np.abs(x[kept]).min() >= np.sort(np.abs(x))[-3000]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(spec: str, bad: float) -> None:
    """NaN or Inf input raises ValueError naming the encoder."""
    x = big(300)
    x[123] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        get_encoder(spec).encode(x)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("d", [0, 1, 1000])
def test_zero_vector(spec: str, d: int) -> None:
    """A zero vector decodes to exact zeros."""
    enc = get_encoder(spec)
    y = enc.decode(enc.encode(np.zeros(d, np.float32)))
    assert y.shape == (d,) and not y.any()


@pytest.mark.parametrize(
    "spec", ["nope", "topk:bogus=1", "topk:ratio=x", "topk:ratio=0", "qsgd:levels=0", "topk:ratio"]
)
def test_bad_specs(spec: str) -> None:
    """Malformed specs are UsageErrors on one line."""
    with pytest.raises(UsageError) as err:
        get_encoder(spec)
    assert "\n" not in str(err.value)


def test_unknown_name_lists_choices() -> None:
    """The message for an unknown name lists the registered encoders."""
    with pytest.raises(UsageError, match="qsgd-elias"):
        get_encoder("zip")


class Halve(Encoder):
    """A user encoder: float32 halves."""

    name = "halve"

    def __init__(self, *, factor: float = 0.5, seed: int = 0, rank: int = 0) -> None:
        super().__init__(seed=seed, rank=rank)
        self.factor = factor

    def encode(self, x: np.ndarray, step: int = 0) -> Payload:
        return Payload((x.astype(np.float32) * self.factor,), x.shape, step)

    def decode(self, payload: Payload, out: np.ndarray | None = None) -> np.ndarray:
        return payload.buffers[0] / np.float32(self.factor)


def test_register_user_encoder() -> None:
    """register() makes a user encoder available by spec, with typed options."""
    register("halve", Halve)
    assert "halve" in available()
    enc = get_encoder("halve:factor=0.25", seed=3)
    assert enc.factor == 0.25 and enc.seed == 3
    x = big(10)
    assert np.allclose(enc.decode(enc.encode(x)), x)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 32), n=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_bitpack_round_trip(bits: int, n: int, seed: int) -> None:
    """pack/unpack are inverse and use bits·ceil(n/8) bytes."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**bits, size=n, dtype=np.uint64).astype(np.uint32)
    packed = pack(values, bits)
    assert packed.nbytes == packed_nbytes(n, bits)
    assert np.array_equal(unpack(packed, bits, n), values)


def test_bitpack_rejects_width() -> None:
    """Widths outside 1..32 are refused."""
    with pytest.raises(ValueError):
        pack(np.zeros(3, np.uint8), 0)


@pytest.mark.parametrize("spec", SPECS)
def test_cupy_matches_numpy_shape(spec: str) -> None:
    """On a GPU, encoders take CuPy arrays and decode to CuPy arrays."""
    cp = cupy_or_none()
    if cp is None:
        pytest.skip("no usable GPU/CuPy")
    x = cp.asarray(big((1 << 18) + 4097))  # past one host block: the GPU runs one block
    enc = get_encoder(spec)
    y = enc.decode(enc.encode(x, 1))
    assert isinstance(y, cp.ndarray) and y.shape == x.shape
    assert enc.encode(x, 1).nbytes == get_encoder(spec).encode(x.get(), 1).nbytes or spec in (
        "dgc",
        "topk:ratio=0.1,delta=1",
    )


@pytest.mark.parametrize("spec", ["sign", "natural", "fp16", "topk:ratio=0.01", "dgc"])
def test_cupy_payload_bits_match_numpy(spec: str) -> None:
    """Encoders without a float reduction in their payload give the host's bits on a GPU
    (sign: the packed signs; the scale is a sum, equal to rounding)."""
    cp = cupy_or_none()
    if cp is None:
        pytest.skip("no usable GPU/CuPy")
    x = big((1 << 18) + 4097, 3)
    host = get_encoder(spec).encode(x, 2)
    dev = get_encoder(spec).encode(cp.asarray(x), 2)
    for h, d in zip(host.buffers, dev.buffers, strict=True):
        if spec == "sign" and h.dtype == np.float32:
            assert np.allclose(d.get(), h, rtol=1e-6)
        else:
            assert np.array_equal(d.get(), h), spec

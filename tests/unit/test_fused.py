"""The fused decode-and-sum equals decoding each payload and adding, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt.encoders import available, get_encoder, with_memory
from hpcopt.encoders.base import DECODE_BLOCK, decode_sum

SPECS = [*available(), "qsgd:levels=127,bucket=64", "topk:ratio=0.1,delta=1", "randomk:scaled=1"]
SIZES = [0, 1, 7, 1001, DECODE_BLOCK + 13]


def inputs(p: int, d: int) -> list[np.ndarray]:
    return [np.random.default_rng([4, i]).standard_normal(d).astype(np.float32) for i in range(p)]


def unfused(enc, payloads, weights, base) -> np.ndarray:
    """base + Σ w·decode, one full temporary per payload (the reference)."""
    d = payloads[0].size
    acc = np.zeros(d, np.float32) if base is None else base.copy()
    for payload, w in zip(payloads, weights, strict=True):
        acc += np.float32(w) * enc.decode(payload).reshape(-1)
    return acc


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("spec", SPECS)
def test_decode_sum_is_the_sum_of_decodes(spec: str, d: int) -> None:
    p, step = 3, 4
    encs = [get_encoder(spec, seed=2, rank=i) for i in range(p)]
    decoder = get_encoder(spec, seed=2, rank=0)
    payloads = []
    for enc, x in zip(encs, inputs(p, d), strict=True):
        payload = enc.encode(x, step)  # copied: the buffers are the encoder's work arrays
        payloads.append(enc.from_bytes(np.concatenate(
            [b.reshape(-1).view(np.uint8) for b in payload.buffers]), x.shape, step))  # fmt: skip
    base = np.random.default_rng(9).standard_normal(d).astype(np.float32)
    for weights, start in (([1.0] * p, None), ([0.5, 0.25, -1.5], base)):
        want = unfused(decoder, payloads, weights, start)
        got = decode_sum(decoder, payloads, np.full(d, np.nan, np.float32), weights=weights,
                         base=start)  # fmt: skip
        assert np.array_equal(got, want), spec


@pytest.mark.parametrize("spec", ["sign", "topk", "qsgd"])
def test_error_feedback_decodes_as_its_encoder(spec: str) -> None:
    enc, ef = get_encoder(spec), with_memory(get_encoder(spec), True)
    payload = enc.encode(inputs(1, 999)[0])
    assert ef.dense == enc.dense
    a, b = np.ones(999, np.float32), np.ones(999, np.float32)
    assert np.array_equal(ef.decode_add(payload, a), enc.decode_add(payload, b))

"""Secure aggregation: options, fixed point, shares, the cost model, and the protocol under MPI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI
from mpirun import ROOT

from hpcopt.aggregation.secure import (
    SecureConfig,
    clip_limit,
    dequantize,
    dropped_ranks,
    parse_options,
    quantize,
    secure,
    secure_aggregate,
)
from hpcopt.aggregation.secure_cost import (
    implementation_client_expansion,
    paper_expansion,
    sent_bytes,
)
from hpcopt.errors import UsageError

pytest.importorskip("cryptography")
pytest.importorskip("Crypto")

SCRIPT = Path(__file__).with_name("mpi_secure.py")


@pytest.mark.parametrize(
    ("n", "d", "reported"), [(2**10, 2**20, 1.73), (2**14, 2**24, 1.98)]
)  # fmt: skip
def test_model_reproduces_the_papers_expansion(n: int, d: int, reported: float) -> None:
    assert paper_expansion(n, d, 16) == pytest.approx(reported, abs=0.01)


def test_model_counts_a_small_case_by_hand() -> None:
    # 4 users, 8 entries of 4 bits: ring 4 + 2 = 6 bits; 2·4·256 + 16·256 + 8·6 = 6192 bits.
    assert paper_expansion(4, 8, 4) == 6192 / 32
    # This implementation, 3 ranks, 10 entries, 32-bit ring, rank 1: 64 + (2·80 + 32) + 40 + 3·32.
    assert sum(sent_bytes(3, 10, 32, 1).values()) == 64 + 192 + 40 + 96
    assert implementation_client_expansion(2**10, 2**20) > paper_expansion(2**10, 2**20)


def test_options_parse_and_refuse() -> None:
    config = parse_options("threshold=3,dropouts=1,drop=before-input,ring_bits=64,scale=1e3")
    expected = SecureConfig(threshold=3, dropouts=1, drop="before-input", ring_bits=64, scale=1e3)
    assert config == expected
    for bad, words in [
        ("threshold=x", "needs an integer"),
        ("colour=red", "unknown option"),
        ("dropouts", "unknown option"),
    ]:
        with pytest.raises(UsageError, match=words):
            parse_options(bad)
    for config, p, words in [
        (SecureConfig(threshold=1), 3, "threshold must be in 2..3"),
        (SecureConfig(threshold=4), 3, "threshold"),
        (SecureConfig(dropouts=3), 3, "dropouts must be in 0..2"),
        (SecureConfig(drop="never"), 3, "drop must be one of"),
        (SecureConfig(ring_bits=16), 3, "ring_bits"),
        (SecureConfig(scale=0.0), 3, "scale"),
        (SecureConfig(prg="rc4"), 3, "prg"),
        (SecureConfig(threshold=2), 1, "threshold must be 1"),
    ]:
        with pytest.raises(UsageError, match=words):
            config.validate(p)


@pytest.mark.parametrize(("ring_bits", "p"), [(32, 5), (64, 5), (64, 1), (32, 1)])
def test_quantized_sum_of_extremes_cannot_wrap(ring_bits: int, p: int) -> None:
    config = SecureConfig(ring_bits=ring_bits, scale=3.0)
    x = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max, 1.5, -0.2], np.float32)
    signed = np.int32 if ring_bits == 32 else np.int64
    ring = quantize(x, config, p)
    limit = clip_limit(p, ring_bits)
    top, bottom, *rest = ring.view(signed).tolist()
    assert rest == [4, -1]  # 4.5 rounds to even
    assert top == -bottom and 0 <= limit - top < (1 if ring_bits == 32 else 2**11)
    total = ring * p  # p copies of the extremes, summed in the ring
    assert total.view(signed).tolist()[:2] == [p * top, -p * top]


def test_quantize_refuses_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        quantize(np.array([1.0, np.nan], np.float32), SecureConfig(), 2)


def test_dropouts_are_drawn_from_seed_and_step() -> None:
    config = SecureConfig(dropouts=2, seed=4)
    first = dropped_ranks(5, config, 0)
    assert first == dropped_ranks(5, config, 0) and len(set(first)) == 2 and 0 not in first
    assert {dropped_ranks(5, config, s) for s in range(20)} != {first}
    assert dropped_ranks(5, SecureConfig(), 3) == ()


def test_shares_recombine_and_a_wrong_share_changes_the_secret() -> None:
    from hpcopt.aggregation import secure_crypto as crypto

    secret = crypto.new_seed()
    shares = crypto.split(secret, 3, 5)
    assert crypto.combine([(u, shares[u]) for u in (4, 0, 2)]) == secret
    wrong = bytes([shares[2][3] ^ 1]) + shares[2][1:]
    assert crypto.combine([(0, shares[0]), (1, shares[1]), (2, wrong)]) != secret
    assert crypto.combine([(0, shares[0]), (1, shares[1])]) != secret  # fewer than t


def test_one_rank_is_the_plain_quantized_value() -> None:
    x = np.linspace(-3, 3, 101, dtype=np.float32).reshape(1, 101)
    config = SecureConfig(scale=1024.0)
    result = secure_aggregate(MPI.COMM_SELF, x, config)
    assert result.nbytes == 0 and result.contributors == (0,)
    expected = dequantize(quantize(x, config, 1), config).reshape(x.shape)
    assert np.array_equal(result.out, expected)
    assert set(result.times) >= {"encode", "communicate", "decode", "expand", "recover"}


def test_path_refuses_other_encoders() -> None:
    class Sign:
        name = "sign"

    x = np.ones(4, np.float32)
    with pytest.raises(UsageError, match="--encoder none"):
        secure(MPI.COMM_SELF, x, Sign())
    assert secure(MPI.COMM_SELF, x, None).nbytes == 0


def test_missing_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['Crypto'] = None\n"
        "from hpcopt.errors import UsageError\n"
        "try:\n"
        "    import hpcopt.aggregation.secure_crypto\n"
        "except UsageError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert "'secure' extra" in out and "hpcopt[secure]" in out and "\n" not in out

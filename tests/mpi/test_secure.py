"""Multi-rank checks of secure aggregation against sums computed locally.

Every rank regenerates every rank's input, so the exact integer sum of the quantized
inputs is known locally, independent of MPI. Run by tests/e2e/test_mpi_modules.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.aggregation import secure_protocol
from hpcopt.aggregation.secure import (
    SecureAggregationError,
    SecureConfig,
    clip_limit,
    dequantize,
    dropped_ranks,
    quantize,
    secure_aggregate,
)
from hpcopt.aggregation.secure_cost import SHARE, sent_bytes
from hpcopt.errors import UsageError

pytestmark = pytest.mark.mpi
SEED = 11
D = 1031  # odd, so no vector length lines up with a block size by chance


class CountingComm:
    """The communicator, counting the bytes of every buffer handed to a send."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.counted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.comm, name)

    def Send(self, buf: Any, dest: int, tag: int) -> None:
        self.counted += buf[0].nbytes
        self.comm.Send(buf, dest, tag)

    def Isend(self, buf: Any, dest: int, tag: int) -> MPI.Request:
        self.counted += buf[0].nbytes
        return self.comm.Isend(buf, dest, tag)

    def Bcast(self, buf: Any, root: int = 0) -> None:
        if self.comm.rank == root:
            self.counted += buf[0].nbytes * (self.comm.size - 1)
        self.comm.Bcast(buf, root=root)


def data(rank: int, d: int = D) -> np.ndarray:
    """Rank ``rank``'s input: normal, with a few entries beyond the clip range."""
    x = np.random.default_rng([SEED, rank]).standard_normal(d).astype(np.float32)
    x[:: max(d // 7, 1)] *= 1e6
    return x


def exact_sum(ranks: tuple[int, ...], config: SecureConfig, p: int, d: int) -> np.ndarray:
    """Σ of the ranks' quantized inputs in int64 (never wraps: the clip keeps it in range)."""
    signed = np.int32 if config.ring_bits == 32 else np.int64
    total = np.zeros(d, dtype=np.int64)
    for u in ranks:
        total += quantize(data(u, d), config, p).view(signed)
    return total


class Checks:
    """Collects failures on this rank."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm, self.count, self.failures = comm, 0, []

    def expect(self, ok: bool, what: str) -> None:
        self.count += 1
        if not ok:
            self.failures.append(f"rank {self.comm.rank}: {what}")


def check_sum(checks: Checks, config: SecureConfig, step: int, d: int = D) -> None:
    """The unmasked sum is exact, the bytes are the buffers sent and the model's count."""
    comm = CountingComm(MPI.COMM_WORLD)
    p, me = comm.size, comm.rank
    drops = dropped_ranks(p, config, step)
    before = drops if config.drop == "before-input" else ()
    after = drops if config.drop == "after-input" else ()
    expected = tuple(u for u in range(p) if u not in before)
    result = secure_aggregate(comm, data(me, d), config, step=step)
    what = f"{config} step {step} d={d}"
    checks.expect(len(drops) == config.dropouts, f"{what}: drew {drops}")
    checks.expect(result.contributors == expected, f"{what}: contributors {result.contributors}")
    total = exact_sum(expected, config, p, d)
    signed = result.aggregate.view(np.int32 if config.ring_bits == 32 else np.int64)
    checks.expect(np.array_equal(signed, total), f"{what}: the unmasked sum is not exact")
    checks.expect(np.array_equal(result.out, dequantize(result.aggregate, config)), what)
    bound = clip_limit(p, config.ring_bits) / config.scale
    clipped = np.zeros(d)
    for u in expected:
        clipped += np.clip(data(u, d).astype(np.float64), -bound, bound)
    error = np.abs(result.out - clipped)  # each input rounds by half a step, the sum to float32
    near = error <= len(expected) * 0.5 / config.scale + 2**-23 * np.abs(clipped)
    checks.expect(bool(np.all(near)), f"{what}: dequantized sum off by {error.max(initial=0)}")
    checks.expect(result.nbytes == comm.counted, f"{what}: {result.nbytes} != {comm.counted} B")
    model = sent_bytes(p, d, config.ring_bits, me, before=before, after=after)
    checks.expect(result.sent == model, f"{what}: per round {result.sent} != model {model}")


def expect_error(
    checks: Checks, config: SecureConfig, words: str, patch: Callable[[], Any] | None = None
) -> None:
    """The run fails with ``words`` in a one-line SecureAggregationError on every rank."""
    comm = MPI.COMM_WORLD
    undo = patch() if patch else None
    try:
        secure_aggregate(comm, data(comm.rank), config, step=1)
        checks.expect(False, f"{config}: no error, expected {words!r}")
    except SecureAggregationError as exc:
        text = str(exc)
        checks.expect(words in text and "\n" not in text, f"{config}: {text!r} lacks {words!r}")
    finally:
        if undo:
            undo()
    check_sum(checks, SecureConfig(), step=2)  # nothing left over on the communicator


def flip_answer(rank: int, user: int) -> Callable[[], Any]:
    """On ``rank``: flip one byte of the share of ``user``'s secret it reveals when unmasking."""

    def patch() -> Callable[[], None]:
        original = secure_protocol.unmask_answer

        def wrong(plain: list[bytes], sent_input: np.ndarray) -> np.ndarray:
            answer = original(plain, sent_input).copy()
            answer[user * SHARE + 7] ^= 0xFF  # not a bit X25519 clamps away
            return answer

        if MPI.COMM_WORLD.rank == rank:
            secure_protocol.unmask_answer = wrong
        return lambda: setattr(secure_protocol, "unmask_answer", original)

    return patch


def tamper_forward() -> Callable[[], None]:
    """On the server: flip one byte of the shares it forwards to rank 1."""
    original = secure_protocol.forward_shares

    def tampered(messages: np.ndarray, p: int) -> list[np.ndarray]:
        out = original(messages, p)
        out[1] = out[1].copy()
        out[1][-1] ^= 1
        return out

    if MPI.COMM_WORLD.rank == 0:
        secure_protocol.forward_shares = tampered
    return lambda: setattr(secure_protocol, "forward_shares", original)


@pytest.fixture
def checks() -> Any:
    """A collector whose failures, from any rank, fail the test on every rank."""
    collected = Checks(MPI.COMM_WORLD)
    yield collected
    assert_everywhere(MPI.COMM_WORLD, not collected.failures, "; ".join(collected.failures))


P = MPI.COMM_WORLD.size
T = SecureConfig().threshold_for(P) if P > 1 else 1


def test_exact_sums_without_dropouts(checks: Checks) -> None:
    check_sum(checks, SecureConfig(), step=0)
    if P > 1:
        check_sum(checks, SecureConfig(), step=0, d=0)
        check_sum(checks, SecureConfig(ring_bits=64, prg="chacha20", scale=1e9), step=5)


def test_one_rank_refuses_dropouts(checks: Checks) -> None:
    if P > 1:
        return
    try:
        secure_aggregate(MPI.COMM_WORLD, data(0), SecureConfig(dropouts=1))
        checks.expect(False, "1 rank with a drop-out was accepted")
    except UsageError as exc:
        checks.expect("dropouts" in str(exc), str(exc))


@pytest.mark.parametrize("stage", ["after-input", "before-input"])
def test_exact_sums_with_dropouts(checks: Checks, stage: str) -> None:
    for k in range(1, min(2, P - T) + 1):
        check_sum(checks, SecureConfig(dropouts=k, drop=stage, seed=k), step=3)
    if P - 1 >= 2 and stage == "before-input":  # the lowest threshold lets all but one drop
        check_sum(checks, SecureConfig(threshold=2, dropouts=P - 2, drop=stage), step=4)


@pytest.mark.parametrize("stage", ["after-input", "before-input"])
def test_too_many_dropouts_is_an_error(checks: Checks, stage: str) -> None:
    if P > 1:  # one drop-out more than the threshold allows
        expect_error(
            checks, SecureConfig(dropouts=P - T + 1, drop=stage), "fewer than the threshold"
        )


def test_wrong_shares_and_tampering_are_errors(checks: Checks) -> None:
    if P == 1:
        return
    # The server combines the first t answers (rank order), so rank 1's or the lowest
    # surviving client's share is always used.
    expect_error(checks, SecureConfig(), "seed does not match", flip_answer(1, 0))
    expect_error(checks, SecureConfig(), "could not authenticate", tamper_forward)
    if P - T >= 1:
        config = SecureConfig(dropouts=1, drop="before-input")
        (gone,) = dropped_ranks(P, config, 1)
        first = min(r for r in range(1, P) if r != gone)
        expect_error(checks, config, "key does not match", flip_answer(first, gone))

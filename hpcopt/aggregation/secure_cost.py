"""Bytes of secure aggregation: the paper's expansion model and this implementation's exact count.

Bonawitz et al. (CCS 2017, client cost): a client sends 2 public keys and receives the other
2(n−1), sends and receives 2(n−1) encrypted shares, sends n shares when unmasking and its masked
vector of d entries in a ring of b + ⌈log2 n⌉ bits (b-bit entries whose sum over n users cannot
wrap): 2n·a_K + (5n−4)·a_S + d·(b + ⌈log2 n⌉) bits, a_K = a_S = 256. Divided by the d·b bits
of sending the entries in the clear, that is 1.73× at n = 2^10, d = 2^20, b = 16 and 1.98× at
n = 2^14, d = 2^24.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from hpcopt.errors import UsageError

__all__ = [
    "ROUNDS",
    "implementation_client_expansion",
    "paper_expansion",
    "received_bytes",
    "sent_bytes",
    "status_bytes",
]

ROUNDS = ("advertise", "share", "input", "survivors", "unmask", "result")
PAPER_KEY_BITS = 256
PAPER_SHARE_BITS = 256
# This implementation's message sizes (secure_crypto's constants, kept here free of the extra).
PUBLIC_PAIR = 64  # two X25519 public keys
SEALED = 80  # two 32-byte shares under ChaCha20-Poly1305 (16-byte tag)
COMMIT = 32  # SHA-256 of the self-mask seed
SHARE = 32  # one share of a 32-byte secret
GONE = 1  # the one-byte notice a dropped rank sends in place of the server's time-out


def status_bytes(p: int) -> int:
    """The result message's header: status code and two details (int64), who is in the sum
    (one byte per rank, padded to 8).
    """
    return 24 + 8 * -(-p // 8)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise UsageError(f"{name} must be >= 1, got {value}")


def paper_expansion(
    n: int, d: int, entry_bits: int = 16, key_bits: int = PAPER_KEY_BITS,
    share_bits: int = PAPER_SHARE_BITS,
) -> float:  # fmt: skip
    """The paper's client expansion: protocol bits over the d·b bits of the entries in the clear."""
    _check_positive(n=n, d=d, entry_bits=entry_bits)
    ring = entry_bits + math.ceil(math.log2(n))
    total = 2 * n * key_bits + (5 * n - 4) * share_bits + d * ring
    return total / (d * entry_bits)


def sent_bytes(
    p: int, d: int, ring_bits: int, rank: int, *, before: Collection[int] = (),
    after: Collection[int] = (),
) -> dict[str, int]:  # fmt: skip
    """Bytes ``rank`` hands to MPI sends per round in a successful run of this implementation.

    ``before``/``after``: the ranks that drop before/after sending their masked input.
    """
    sent = dict.fromkeys(ROUNDS, 0)
    if p == 1:
        return sent
    vector = d * ring_bits // 8
    if rank == 0:
        survivors = p - len(before)
        sent["advertise"] = PUBLIC_PAIR * p * (p - 1)
        sent["share"] = SEALED * (p - 1) ** 2
        sent["survivors"] = p * (survivors - 1)
        sent["result"] = (status_bytes(p) + vector) * (p - 1)
        return sent
    sent["advertise"] = PUBLIC_PAIR
    sent["share"] = SEALED * (p - 1) + COMMIT
    sent["input"] = GONE if rank in before else vector
    if rank not in before:
        sent["unmask"] = GONE if rank in after else SHARE * p
    return sent


def received_bytes(p: int, d: int, ring_bits: int, rank: int, *, dropped: bool = False) -> int:
    """Bytes a client (rank ≥ 1) receives; ``dropped``: it dropped before sending its input."""
    if p == 1 or rank == 0:
        raise UsageError("received_bytes counts a client: p >= 2 and rank >= 1")
    survivors = 0 if dropped else p
    return PUBLIC_PAIR * p + SEALED * (p - 1) + survivors + status_bytes(p) + d * ring_bits // 8


def implementation_client_expansion(
    n: int, d: int, entry_bits: int = 16, ring_bits: int = 32
) -> float:
    """This implementation's client bits in the paper's terms (sent + received, without the
    result's download) over the d·b bits of the entries in the clear.
    """
    _check_positive(n=n, d=d, entry_bits=entry_bits)
    sent = sum(sent_bytes(n, d, ring_bits, 1).values())
    received = received_bytes(n, d, ring_bits, 1) - status_bytes(n) - d * ring_bits // 8
    return 8 * (sent + received) / (d * entry_bits)

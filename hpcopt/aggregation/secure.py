"""Secure aggregation (Bonawitz et al. 2017): rank 0 learns only the sum of fixed-point inputs.

Every rank is a user; rank 0 also plays the server. Inputs are quantized to fixed point in
Z/2^ring_bits, masked with pairwise masks (X25519-agreed seeds) and a self mask, and unmasked
by the server with Shamir shares that survive drop-outs. The rounds, what each sends and the
cost model are in docs/secure.md; :func:`secure` is the aggregation path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation.base import PHASES, Result
from hpcopt.aggregation.secure_cost import ROUNDS
from hpcopt.backend import Scratch, is_device_array
from hpcopt.errors import UsageError

__all__ = [
    "DROP_STAGES",
    "PHASE_OF",
    "RING_BITS",
    "Result",
    "SecureAggregationError",
    "SecureConfig",
    "SecureResult",
    "clip_limit",
    "dequantize",
    "dropped_ranks",
    "parse_options",
    "quantize",
    "secure",
    "secure_aggregate",
]

DROP_STAGES = ("after-input", "before-input")
RING_BITS = (32, 64)
PRGS = ("aes-ctr", "chacha20")
# Each detailed time belongs to one of the three phases every aggregation path reports.
PHASE_OF = {
    "quantize": "encode",
    "keys": "encode",
    "share": "encode",
    "expand": "encode",
    "mask": "encode",
    "communicate": "communicate",
    "recover": "decode",
    "unmask": "decode",
    "dequantize": "decode",
}


class SecureAggregationError(UsageError):
    """The sum cannot be unmasked (too few users, a wrong share); raised on every rank."""


class SecureResult(NamedTuple):
    """:class:`Result` plus the unmasked ring elements, who is in the sum, and bytes per round."""

    out: np.ndarray
    nbytes: int
    times: dict[str, float]
    aggregate: np.ndarray
    contributors: tuple[int, ...]
    sent: dict[str, int]


@dataclass(frozen=True)
class SecureConfig:
    """Options of the protocol (see docs/secure.md)."""

    threshold: int | None = None  # t of n Shamir shares; None: a majority, p // 2 + 1
    dropouts: int = 0  # how many ranks (never rank 0) drop out
    seed: int = 0  # which ranks drop: drawn from (seed, step)
    drop: str = "after-input"  # when they drop: after or before sending the masked input
    ring_bits: int = 32  # the group Z/2^ring_bits
    scale: float = 65536.0  # fixed point: round(x · scale)
    prg: str = "aes-ctr"  # the mask stream: AES-128-CTR or ChaCha20

    def threshold_for(self, p: int) -> int:
        return self.threshold if self.threshold is not None else p // 2 + 1

    def validate(self, p: int) -> None:
        """UsageError (one line) when the options do not fit ``p`` ranks."""
        t = self.threshold_for(p)
        if p > 1 and not 2 <= t <= p:
            raise UsageError(f"secure: threshold must be in 2..{p} at {p} ranks, got {t}")
        if p == 1 and t != 1:
            raise UsageError(f"secure: threshold must be 1 at 1 rank, got {t}")
        if not 0 <= self.dropouts <= p - 1:
            limit = f"0..{p - 1} (rank 0 stays)"
            raise UsageError(f"secure: dropouts must be in {limit}, got {self.dropouts}")
        if self.drop not in DROP_STAGES:
            stages = ", ".join(DROP_STAGES)
            raise UsageError(f"secure: drop must be one of {stages}, got {self.drop!r}")
        if self.ring_bits not in RING_BITS:
            raise UsageError(f"secure: ring_bits must be 32 or 64, got {self.ring_bits}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise UsageError(f"secure: scale must be a positive number, got {self.scale}")
        if self.prg not in PRGS:
            raise UsageError(f"secure: prg must be one of {', '.join(PRGS)}, got {self.prg!r}")


def parse_options(text: str) -> SecureConfig:
    """``threshold=3,dropouts=1,seed=0,drop=after-input,ring_bits=32,scale=65536,prg=aes-ctr``."""
    kinds = {f.name: f for f in fields(SecureConfig)}
    values: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, raw = item.partition("=")
        if key not in kinds or not eq:
            raise UsageError(f"secure: unknown option {item!r}; choose from: {', '.join(kinds)}")
        convert, kind = (
            (float, "a number") if key == "scale"
            else (str, "a name") if key in ("drop", "prg")
            else (int, "an integer")
        )  # fmt: skip
        try:
            values[key] = convert(raw)
        except ValueError:
            raise UsageError(f"secure: {key} needs {kind}, got {raw!r}") from None
    return SecureConfig(**values)


def clip_limit(p: int, ring_bits: int) -> int:
    """The largest |integer| an entry may take so that the sum of ``p`` never wraps."""
    return ((1 << (ring_bits - 1)) - 1) // p


def _ring_types(ring_bits: int) -> tuple[type, type]:
    return (np.uint32, np.int32) if ring_bits == 32 else (np.uint64, np.int64)


def _float_limit(limit: int) -> float:
    """The largest float64 not above ``limit`` (a 64-bit ring's limit may not be a float64)."""
    as_float = float(limit)
    return as_float if int(as_float) <= limit else float(np.nextafter(as_float, 0.0))


def quantize(x: np.ndarray, config: SecureConfig, p: int, scratch: Scratch | None = None) -> Any:
    """Ring elements of round(x · scale), clipped to ±:func:`clip_limit`; ValueError on NaN/Inf."""
    scratch = scratch or Scratch()
    flat = x.reshape(-1)
    if flat.size and not (np.isfinite(flat.min()) and np.isfinite(flat.max())):
        raise ValueError("secure aggregation needs finite inputs")
    limit = _float_limit(clip_limit(p, config.ring_bits))
    wide = scratch.get("secure-f64", flat.size, np.float64)
    np.multiply(flat, config.scale, out=wide, dtype=np.float64)
    np.clip(wide, -limit, limit, out=wide)
    np.rint(wide, out=wide)
    unsigned, signed = _ring_types(config.ring_bits)
    ring = scratch.get("secure-ring", flat.size, unsigned)
    np.copyto(ring.view(signed), wide, casting="unsafe")
    return ring


def dequantize(ring: np.ndarray, config: SecureConfig) -> np.ndarray:
    """float32 of the signed ring elements divided by the scale."""
    signed = _ring_types(config.ring_bits)[1]
    out = np.empty(ring.size, dtype=np.float32)
    np.divide(ring.view(signed), config.scale, out=out, dtype=np.float64, casting="same_kind")
    return out


def dropped_ranks(p: int, config: SecureConfig, step: int) -> tuple[int, ...]:
    """The ranks that drop out at ``step``: ``dropouts`` of 1..p−1, drawn from (seed, step)."""
    if config.dropouts == 0:
        return ()
    rng = np.random.default_rng([config.seed, step])
    chosen = rng.choice(np.arange(1, p), size=config.dropouts, replace=False)
    return tuple(sorted(int(r) for r in chosen))


class _Clock:
    """MPI.Wtime intervals by detail (see PHASE_OF)."""

    def __init__(self) -> None:
        self.detail = dict.fromkeys(PHASE_OF, 0.0)
        self.t = MPI.Wtime()

    def lap(self, what: str) -> None:
        now = MPI.Wtime()
        self.detail[what] += now - self.t
        self.t = now

    def times(self) -> dict[str, float]:
        """The three phases, then every detail."""
        out = dict.fromkeys(("encode", "communicate", "decode"), 0.0)
        for what, seconds in self.detail.items():
            out[PHASE_OF[what]] += seconds
        return {**out, **{k: v for k, v in self.detail.items() if k != "communicate"}}


def secure_aggregate(
    comm: MPI.Comm, x: np.ndarray, config: SecureConfig | None = None, *, step: int = 0,
    scratch: Scratch | None = None,
) -> SecureResult:  # fmt: skip
    """Run the protocol once on float32 ``x``; every rank gets the same sum of the contributors."""
    config = config or SecureConfig()
    p = comm.size
    config.validate(p)
    if is_device_array(x):
        raise UsageError("secure aggregation runs on host buffers (use --device cpu)")
    from hpcopt.aggregation import secure_protocol  # needs the 'secure' extra

    scratch = scratch or Scratch()
    clock = _Clock()
    ring = quantize(x, config, p, scratch)
    clock.lap("quantize")
    if p == 1:
        aggregate, sent = ring.copy(), dict.fromkeys(ROUNDS, 0)
        contributors: tuple[int, ...] = (0,)
    else:
        run = secure_protocol.Protocol(comm, config, step, scratch, clock, ring.size)
        aggregate, contributors = run.aggregate(ring)
        sent = run.sent
    out = dequantize(aggregate, config).reshape(x.shape)
    clock.lap("dequantize")
    return SecureResult(out, sum(sent.values()), clock.times(), aggregate, contributors, sent)


def secure(
    comm: MPI.Comm, x: np.ndarray, encoder: Any = None, *, step: int = 0,
    scratch: Scratch | None = None, config: SecureConfig | None = None,
) -> Result:  # fmt: skip
    """The aggregation path: :func:`secure_aggregate` as ``Result(out, nbytes, times)``, the
    times split into the three phases only (the detail is in :func:`secure_aggregate`'s).

    The protocol quantizes itself, so ``encoder`` must be None or the ``none`` encoder.
    """
    name = getattr(encoder, "name", "none") if encoder is not None else "none"
    if name != "none":
        raise UsageError(
            f"secure aggregation quantizes to fixed point itself; use --encoder none, not {name}"
        )
    result = secure_aggregate(comm, x, config, step=step, scratch=scratch)
    return Result(result.out, result.nbytes, {k: result.times[k] for k in PHASES})

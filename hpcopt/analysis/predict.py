"""Predictions at any scale from α, β, γ, and where payload encoders start to pay off.

Break-even of an encoder (n input bytes per rank, m wire bytes, encode and decode
times e and d, p ranks, uncompressed reference: the ring allreduce
``R(n) = 2(p−1)α + 2(p−1)/p·n·β + (p−1)/p·n·γ``, γ per byte of float32 sums):

* summable payloads (fp16, bf16, random-k with a shared seed, ...) are allreduced
  with the same ring in k rounds (k = 2 for PowerSGD's P and Q; together m bytes), and
  their sums cost γ per byte like float32 sums (F16C adds float16 at memory speed;
  measured: an fp16 ring allreduce takes about half the float32 ring's time on shared
  memory): ``e + R(m) + (k−1)·2(p−1)α + d = R(n)`` ⇒
  ``β* = (e + d + (k−1)·2(p−1)α − (p−1)/p·(n−m)·γ) / (2(p−1)/p·(n−m))``. A negative
  numerator means the saved sums outweigh encoding and decoding: faster on any link.
* other payloads are allgathered (ring allgather, each rank receives p−1 payloads),
  then the p payloads are decoded into one sum (the fused decode-and-sum adds while it
  decodes, so d covers the sum): ``e + (p−1)α + (p−1)·m·β + p·d = R(n)`` ⇒
  ``β* = (e + p·d − (p−1)/p·n·γ − (p−1)α) / ((p−1)·(2n/p − m))``;
  the denominator is positive only when n/m > p/2, so past p = 2·ratio ranks
  compression never pays.

Compression is faster on links slower than ``1/β*`` (reported in GB/s). e and d come
from the compress kernel at one size: below the last-level cache they run from cache
and the figure is higher than for large messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from hpcopt.analysis.model import GB, forms, lower_bound, predict

__all__ = [
    "break_even",
    "break_even_table",
    "link_break_even",
    "predict_table",
    "rounds_of",
    "schemes",
]


def schemes(kernel: str = "allreduce") -> list[str]:
    """The closed forms a prediction compares: every registered algorithm's of ``kernel``
    but the generic ones."""
    generic = ("generic", "hockney")
    return [name for name in forms(kernel) if name not in generic]


def predict_table(
    p: int, sizes: Sequence[int], alpha: float, beta: float, gamma: float,
    kernel: str = "allreduce",
) -> list[dict[str, Any]]:  # fmt: skip
    """Per size: each closed form of ``kernel`` in seconds at p ranks, the lower bound (γ
    left out for allreduce, as before) and the best."""
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"kernel": kernel, "ranks": p, "size_bytes": n}
        times = {name: predict(name, p, n, alpha, beta, gamma) for name in schemes(kernel)}
        row.update({f"{name}_s": t for name, t in times.items()})
        bound_gamma = 0.0 if kernel == "allreduce" else gamma
        row["lower_bound_s"] = lower_bound(p, n, alpha, beta, bound_gamma, kernel)
        row["best"] = min(times, key=times.__getitem__) if times else "-"
        rows.append(row)
    return rows


def rounds_of(rec: dict[str, Any]) -> int:
    """Allreduce rounds an encoder's payload needs; 0 when it must be allgathered."""
    encoder = _encoder_of(rec)
    if isinstance(rec.get("summable"), bool) and not rec.get("two_stage"):
        return int(rec["summable"])
    if encoder is None:
        return 0
    return 2 if getattr(encoder, "two_stage", False) else int(bool(encoder.summable))


def _encoder_of(rec: dict[str, Any]) -> Any:
    from hpcopt.encoders import get_encoder
    from hpcopt.errors import UsageError

    spec = str(rec.get("encoder", "")).removesuffix("+ef")
    try:
        return get_encoder(spec)
    except (UsageError, TypeError, ValueError):
        return None


def break_even(
    p: int, n: float, m: float, enc_s: float, dec_s: float, alpha: float, gamma: float,
    rounds: int,
) -> float:  # fmt: skip
    """β* in s/byte: compression wins on links with β above it (0: always, inf: never).

    ``rounds``: allreduces of the payload (0: allgather, then decode and sum p payloads).
    """
    if p < 2:
        return math.inf
    share = (p - 1) / p
    if rounds:
        num = enc_s + dec_s + (rounds - 1) * 2 * (p - 1) * alpha - share * (n - m) * gamma
        den = 2 * share * (n - m)
    else:
        num = enc_s + p * dec_s - share * n * gamma - (p - 1) * alpha
        den = (p - 1) * (2 * n / p - m)
    if den <= 0:
        return math.inf
    return max(num, 0.0) / den


def break_even_table(
    records: Iterable[dict[str, Any]], p: int, alpha: float, gamma: float
) -> list[dict[str, Any]]:
    """Per compress record: the link bandwidth below which the encoder speeds up allreduce."""
    rows = []
    for rec in records:
        values = [rec.get(k) for k in ("size_bytes", "wire_bytes", "encode_GBps", "decode_GBps")]
        nums = [float(v) for v in values if isinstance(v, (int, float)) and v > 0]
        if len(nums) < len(values):
            continue
        n, m, enc, dec = nums
        rounds = rounds_of(rec)
        e, d = n / (enc * GB), n / (dec * GB)
        beta_star = break_even(p, n, m, e, d, alpha, gamma, rounds)
        if beta_star == 0:
            pays_below = math.inf
        elif math.isinf(beta_star):
            pays_below = 0.0
        else:
            pays_below = 1 / (beta_star * GB)
        rows.append(
            {
                "encoder": rec.get("encoder"),
                "size_bytes": rec["size_bytes"],
                "ranks": p,
                "ratio": n / m,
                "scheme": f"allreduce x{rounds}" if rounds else "allgather",
                "pays_below_GBps": pays_below,
            }
        )
    return rows


def link_break_even(t_s: float, wire: float, ref_s: float, ref_wire: float, beta: float) -> float:
    """GB/s below which a compressed allreduce beats the reference, from both measured on a
    link of known β (s/byte): each time is T0 + wire·β, T0 what does not scale with the
    link (latency, encode, decode, sums), wire the bytes a rank sends. inf: faster on
    every link; 0: never (it sends at least as much)."""
    if ref_wire <= wire:
        return 0.0
    beta_star = ((t_s - wire * beta) - (ref_s - ref_wire * beta)) / (ref_wire - wire)
    return math.inf if beta_star <= 0 else 1 / (beta_star * GB)

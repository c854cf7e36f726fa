"""Adaptive compression: one knob of an encoder (top-k's ratio, QSGD's levels) chosen before
every aggregation from what the run measured. The ranks agree on the level in
:func:`hpcopt.aggregation.adaptive.run_adaptive`; this module only measures and proposes.

``--encoder adaptive:base=topk,levels=0.1/0.01/0.001,rule=time,target=1`` holds one encoder
per level, least compressed first. Before each call every rank proposes a level and the ranks
agree on it with one 8-byte Allreduce (counted in the bytes and the communicate time):

- ``rule=time``: one level toward the least compressed level whose predicted link time is at
  most ``target`` times the compute time between calls (the optimizer's compute phase, or
  the wall time between calls). Link seconds per payload byte (measured communicate time
  over the payload's ``wire_bytes``) and the compute time are running averages. The most
  compressed proposal wins, so the slowest link sets the pace.
- ``rule=residual`` (with ``--ef``): ρ = ‖e‖/‖x‖, the error-feedback residual after the call
  over its input. Above ``high`` one level less compressed, below ``low`` one level more;
  the least compressed proposal wins.

Each call's level and this rank's signal are kept in ``history`` (the train kernel logs them
per step).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from hpcopt.backend import array_module
from hpcopt.encoders.base import Payload
from hpcopt.encoders.registry import ENCODERS, get_encoder, register
from hpcopt.errors import UsageError
from hpcopt.registry import Option
from hpcopt.specs import choice, nonnegative_real, positive_real, text

__all__ = ["KNOBS", "RULES", "Adaptive"]

RULES = ("time", "residual")
# The knob each base encoder adapts by default, and its default levels (least compressed first).
KNOBS = {"topk": "ratio", "randomk": "ratio", "dgc": "ratio", "qsgd": "levels"}
DEFAULT_LEVELS = {"ratio": "0.1/0.03/0.01/0.003/0.001", "levels": "127/31/7/3/1"}
SMOOTHING = 0.5  # weight of the newest link-time sample in the running average


class Adaptive:
    """A codec that delegates to the encoder of the current level; the levels' knob values
    sorted from least to most compressed (the larger value compresses less)."""

    unbiased = False
    two_stage = False

    def __init__(
        self, *, base: str = "topk", knob: str = "", levels: str = "", rule: str = "time",
        target: float = 1.0, low: float = 1.0, high: float = 4.0, seed: int = 0, rank: int = 0,
    ) -> None:  # fmt: skip
        knob = knob or KNOBS.get(base, "")
        if not knob or base == "adaptive":
            raise UsageError(f"adaptive: give knob= for base {base} (defaults exist for "
                             f"{', '.join(KNOBS)})")  # fmt: skip
        entry = ENCODERS[base]
        if knob not in {o.key for o in entry.options}:
            raise UsageError(f"adaptive: encoder {base} has no option {knob!r}")
        raw = [v.strip() for v in (levels or DEFAULT_LEVELS.get(knob, "")).split("/")]
        if not all(raw):
            raise UsageError(f"adaptive: levels={levels!r} is not a /-separated list of values")
        built = [get_encoder(f"{base}:{knob}={v}", seed=seed, rank=rank) for v in raw]
        if built[0].two_stage:
            raise UsageError(f"adaptive: {base} is summed in two stages and cannot adapt")
        if low > high:
            raise UsageError(f"adaptive: low={low} is above high={high}")
        values = [_number(v) for v in raw]
        order = sorted(range(len(raw)), key=lambda i: -values[i])
        self.encoders = [built[i] for i in order]
        self.values = [values[i] for i in order]
        self.base, self.knob, self.rule = base, knob, rule
        self.target, self.low, self.high = target, low, high
        self.level = 0
        self.history: list[tuple[int, int, float]] = []  # (step, level, this rank's signal)
        self._per_byte: float | None = None  # link seconds per payload byte, running average
        self._compute: float | None = None  # compute seconds between calls, running average
        self._last_compute: float | None = None
        self._last_end: float | None = None
        self._residual = math.nan

    # The codec protocol: everything goes to the current level's encoder.
    @property
    def current(self) -> Any:
        return self.encoders[self.level]

    @property
    def name(self) -> str:
        return "adaptive"

    @property
    def summable(self) -> bool:
        return bool(self.encoders[0].summable)

    @property
    def sum_dtype(self) -> str:
        return str(self.encoders[0].sum_dtype)

    def encode(self, x: Any, step: int = 0) -> Payload:
        return self.current.encode(x, step)

    @property
    def dense(self) -> bool:
        return bool(self.current.dense)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        return self.current.decode(payload, out)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        return self.current.decode_add(payload, out, weight=weight, start=start)

    def from_bytes(self, raw: Any, shape: tuple[int, ...], step: int = 0) -> Payload:
        return self.current.from_bytes(raw, shape, step)

    def wire_bytes(self, d: int) -> int | None:
        return self.current.wire_bytes(d)

    def reset(self) -> None:
        for encoder in self.encoders:
            encoder.reset()

    # The controller.
    def propose(self, d: int, compute_s: float | None) -> tuple[int, float]:
        """This rank's level for the next call (one level away from the current one at most),
        and the signal it was chosen from."""
        if self.rule == "residual":
            return self._by_residual()
        target, signal = self._by_time(d, compute_s)
        step = (target > self.level) - (target < self.level)
        return self.level + step, signal

    def _by_residual(self) -> tuple[int, float]:
        signal = self._residual
        if math.isnan(signal):  # nothing encoded here yet (a non-leader): no opinion
            return (len(self.encoders) - 1 if self.history else self.level), signal
        if signal > self.high:
            return max(self.level - 1, 0), signal
        if signal < self.low:
            return min(self.level + 1, len(self.encoders) - 1), signal
        return self.level, signal

    def _by_time(self, d: int, compute_s: float | None) -> tuple[int, float]:
        """The least compressed level that fits the budget, and the current level's predicted
        link time over the compute time."""
        if compute_s is not None:
            last, self._last_compute = self._last_compute, compute_s
            sample = compute_s - last if last is not None else None
        else:
            end = self._last_end
            sample = time.perf_counter() - end if end is not None else None
        if sample is not None:
            self._compute = _smooth(self._compute, sample)
        if self._compute is None or self._per_byte is None:
            return self.level, math.nan
        compute = max(self._compute, 1e-12)
        link = [self._per_byte * self._wire(level, d) for level in range(len(self.encoders))]
        fits = [level for level, t in enumerate(link) if t <= self.target * compute]
        return (fits[0] if fits else len(link) - 1), link[self.level] / compute

    def _wire(self, level: int, d: int) -> float:
        """Payload bytes at ``level`` (its wire_bytes, else proportional to its knob value)."""
        exact = self.encoders[level].wire_bytes(d)
        if exact is not None:
            return float(exact)
        return 4.0 * d * self.values[level] / max(self.values[0], 1e-30)

    def observe(self, x: Any, codec: Any, sent: int, communicate_s: float) -> None:
        """Take the measurements of a finished call: bytes sent, seconds communicating, and
        the residual of ``codec`` (when it has error feedback) relative to the input ``x``."""
        self._last_end = time.perf_counter()
        payload = self._wire(self.level, x.size)
        if sent > 0 and payload > 0:
            self._per_byte = _smooth(self._per_byte, communicate_s / payload)
        residual = getattr(codec, "residual", None)
        if residual is not None:
            xp = array_module(residual)
            norm = float(xp.linalg.norm(x.reshape(-1)))
            self._residual = float(xp.linalg.norm(residual)) / norm if norm > 0 else 0.0

    def summary(self) -> str:
        """How often each knob value was chosen: ``ratio=0.1:3 ratio=0.01:7``."""
        counts = Counter(level for _, level, _ in self.history)
        return " ".join(f"{self.knob}={self.values[k]:g}:{counts[k]}" for k in sorted(counts))


def _smooth(average: float | None, sample: float) -> float:
    """The running average after ``sample`` (the sample itself when there is none yet)."""
    return sample if average is None else SMOOTHING * sample + (1 - SMOOTHING) * average


def _number(value: str) -> float:
    """A level's knob value as a number (levels are ordered by it)."""
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"adaptive: level {value!r} is not a number") from None


register("adaptive", Adaptive, options=(
    Option("base", text, "topk", "the encoder whose knob adapts"),
    Option("knob", text, "", "its option that adapts (default: ratio, or levels for qsgd)"),
    Option("levels", text, "", "/-separated knob values"),
    Option("rule", choice(*RULES), "time", "time (link vs compute) or residual (needs --ef)"),
    Option("target", positive_real, 1.0, "time: link time at most target x compute time"),
    Option("low", nonnegative_real, 1.0, "residual: below it, compress more"),
    Option("high", positive_real, 4.0, "residual: above it, compress less"),
))  # fmt: skip

"""Step-size schedules: lr(t) = lr · warm-up(t) · decay(t − warm-up), selected by a spec.

``constant``, ``inv`` (1/(1 + t/t0)), ``invsqrt`` (1/√(1 + t/t0)), ``step`` (``factor`` every
``every`` iterations) and ``cosine`` (from 1 down to ``floor`` over the iteration budget).
A linear warm-up over the first ``warmup`` iterations rises from lr/warmup to lr; the decay
starts after it. t counts outer iterations (steps, rounds, or applied updates for async).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hpcopt.errors import UsageError
from hpcopt.registry import Registry
from hpcopt.specs import fraction, nonnegative_int, positive_real, unit_interval

__all__ = ["SCHEDULES", "Schedule"]

Decay = Callable[[int], float]


def _constant(*, horizon: int) -> Decay:
    return lambda t: 1.0


def _inv(*, horizon: int, t0: float = 100.0) -> Decay:
    return lambda t: 1.0 / (1.0 + t / t0)


def _invsqrt(*, horizon: int, t0: float = 100.0) -> Decay:
    return lambda t: 1.0 / math.sqrt(1.0 + t / t0)


def _step(*, horizon: int, factor: float = 0.5, every: int = 0) -> Decay:
    period = every or max(1, horizon // 4)
    return lambda t: factor ** (t // period)


def _cosine(*, horizon: int, floor: float = 0.0) -> Decay:
    span = max(1, horizon)
    return lambda t: floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))


SCHEDULES: Registry[Decay] = Registry("schedule", context=("horizon",))
SCHEDULES.register("constant", _constant)
SCHEDULES.register("inv", _inv, parsers={"t0": positive_real})
SCHEDULES.register("invsqrt", _invsqrt, parsers={"t0": positive_real})
SCHEDULES.register("step", _step, parsers={"factor": fraction, "every": nonnegative_int})
SCHEDULES.register("cosine", _cosine, parsers={"floor": unit_interval})


class Schedule:
    """The multiplier of the base step size at iteration t (warm-up, then decay)."""

    def __init__(self, spec: str = "constant", *, warmup: int = 0, horizon: int = 1) -> None:
        if warmup < 0:
            raise UsageError(f"--warmup-iters must be >= 0, not {warmup}")
        self.spec, self.warmup = spec, warmup
        self.decay = SCHEDULES.build(spec, horizon=max(1, horizon - warmup))

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / self.warmup
        return self.decay(t - self.warmup)

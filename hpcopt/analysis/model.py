"""Hockney α–β–γ cost models of collective algorithms and their least-squares fits.

Every closed form is linear in (α, β, γ): ``t(p, n) = a(p)·α + b(p, n)·β + c(p, n)·γ``
with α in seconds per message, β and γ in seconds per byte (p ranks, n bytes per rank).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcopt.collectives import COLLECTIVES, cost_form
from hpcopt.collectives.cost import GENERIC, HOCKNEY, Coefficients, CostForm

__all__ = [
    "Fit",
    "coefficients",
    "fit_linear",
    "form_for",
    "forms",
    "lower_bound",
    "predict",
]

GB = 1e9


def forms(kernel: str | None = None) -> dict[str, CostForm]:
    """Every known closed form by name: the link model and each registered algorithm's, of
    every operation or only of ``kernel``'s."""
    known = {f.name: f for f in (HOCKNEY, GENERIC)}
    owners = list(COLLECTIVES.values()) if kernel is None else [COLLECTIVES[kernel]]
    for owner in owners:
        for name in owner.names():
            cost = owner[name].info["cost"]
            known.setdefault(cost.name, cost)
    return known


def form_for(algo: str, kernel: str = "allreduce") -> str:
    """The form name of a record's algorithm: p2p patterns are links, algorithms their own
    (the generic form where the operation or the algorithm has none)."""
    if kernel == "p2p":
        return HOCKNEY.name
    found = cost_form(algo, kernel)
    return found.name if found is not None else GENERIC.name


def coefficients(form: str, p: int, n: float) -> Coefficients:
    """(a, b, c) with ``t = a·α + b·β + c·γ`` for ``form`` at p ranks and n bytes."""
    found = forms().get(form)
    if found is None:
        raise ValueError(f"unknown cost model {form!r}")
    return found.coefficients(p, n)


def predict(form: str, p: int, n: float, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Seconds for ``form`` at p ranks and n bytes given α (s), β and γ (s/byte)."""
    a, b, c = coefficients(form, p, n)
    return a * alpha + b * beta + c * gamma


def lower_bound(
    p: int, n: float, alpha: float, beta: float, gamma: float = 0.0, kernel: str = "allreduce"
) -> float:
    """No algorithm of ``kernel`` beats this (allreduce: ⌈log2 p⌉·α + 2(p−1)/p·n·β, plus
    (p−1)/p·n·γ when γ is given)."""
    bound = COLLECTIVES[kernel].operation.bound
    if p <= 1 or bound is None:
        return 0.0
    a, b, c = bound(p, n)
    return a * alpha + b * beta + c * gamma


def _solve(design: np.ndarray, t: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Non-negative relative-error least squares over at most three unknowns."""
    rows = design / t[:, None]
    target = (t - fixed) / t
    free = [j for j in range(design.shape[1]) if np.any(design[:, j])]
    best, best_cost = np.zeros(design.shape[1]), float(np.sum(target**2))
    for size in range(1, len(free) + 1):
        for cols in itertools.combinations(free, size):
            sub = rows[:, cols]
            if np.linalg.matrix_rank(sub) < len(cols):
                continue
            sol, *_ = np.linalg.lstsq(sub, target, rcond=None)
            if np.any(sol < 0):
                continue
            cost = float(np.sum((target - sub @ sol) ** 2))
            if cost < best_cost:
                best = np.zeros(design.shape[1])
                best[list(cols)] = sol
                best_cost = cost
    return best


@dataclass
class Fit:
    """A fitted model: parameters in seconds and seconds per byte, and its residuals."""

    name: str
    form: str
    ranks: list[int]
    alpha_s: float
    beta_s: float | None
    gamma_s: float | None
    points: list[tuple[int, int, float, float]] = field(default_factory=list)
    note: str = ""

    @property
    def r2(self) -> float:
        """Coefficient of determination on the measured times."""
        meas = np.array([m for *_, m, _ in self.points])
        pred = np.array([q for *_, q in self.points])
        total = float(np.sum((meas - meas.mean()) ** 2))
        return 1.0 - float(np.sum((meas - pred) ** 2)) / total if total > 0 else float("nan")

    def pred_error(self) -> list[dict[str, Any]]:
        """Per (ranks, size): measured, predicted and (predicted − measured) / measured."""
        return [
            {"ranks": p, "size_bytes": n, "measured_s": m, "predicted_s": q, "rel_error": q / m - 1}
            for p, n, m, q in self.points
        ]

    def record(self) -> dict[str, Any]:
        """The fit as a JSON-ready record (α in µs, β and γ as bandwidths in GB/s)."""
        errors = [abs(e["rel_error"]) for e in self.pred_error()]
        return {
            "name": self.name,
            "form": self.form,
            "ranks": self.ranks,
            "alpha_us": self.alpha_s * 1e6,
            "beta_GBps": _bandwidth(self.beta_s),
            "gamma_GBps": _bandwidth(self.gamma_s),
            "r2": self.r2,
            "max_abs_rel_error": max(errors, default=float("nan")),
            "median_abs_rel_error": float(np.median(errors)) if errors else float("nan"),
            "note": self.note,
            "pred_error": self.pred_error(),
        }


def _bandwidth(per_byte: float | None) -> float | None:
    if per_byte is None:
        return None
    return 1 / (per_byte * GB) if per_byte > 0 else float("inf")


def fit_linear(
    name: str,
    form: str,
    samples: Sequence[tuple[int, int, float]],
    *,
    beta: float | None = None,
    gamma: float | None = None,
) -> Fit:
    """Fit α (and β, γ unless given) to (ranks, bytes, seconds) samples of one form.

    γ is only separable from β when the samples span rank counts with different
    β/γ coefficient ratios; otherwise it is left out and β absorbs the reduction.
    """
    if len(samples) < 2:
        raise ValueError(f"{name}: need at least two sizes to fit, got {len(samples)}")
    design = np.array([coefficients(form, p, n) for p, n, _ in samples])
    t = np.array([s for *_, s in samples], dtype=float)
    note = ""
    if beta is None and gamma is None and np.linalg.matrix_rank(design / t[:, None]) < 3:
        gamma = 0.0
        if np.any(design[:, 2]):
            note = "one rank count: gamma not separable, beta includes the reduction"
    fixed = np.zeros(len(t))
    for j, value in ((1, beta), (2, gamma)):
        if value is not None:
            fixed += design[:, j] * value
            design[:, j] = 0.0
    alpha_s, beta_s, gamma_s = _solve(design, t, fixed)
    beta_s = beta if beta is not None else beta_s
    gamma_s = gamma if gamma is not None else gamma_s
    ranks = sorted({p for p, _, _ in samples})
    points = [(p, n, s, predict(form, p, n, alpha_s, beta_s, gamma_s)) for p, n, s in samples]
    has_gamma = forms()[form].separates_gamma and not note
    return Fit(name, form, ranks, alpha_s, beta_s, gamma_s if has_gamma else None, points, note)

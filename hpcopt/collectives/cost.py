"""Closed-form α–β–γ cost models of collective algorithms (Hockney model).

Every form is linear in (α, β, γ): ``t(p, n) = a·α + b·β + c·γ`` with α in seconds per
message, β and γ in seconds per byte, p ranks and n bytes per rank. An algorithm
registers its form next to its function, so that fits and predictions cover it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["GENERIC", "HOCKNEY", "Coefficients", "CostForm", "fold_split"]

Coefficients = tuple[float, float, float]


@dataclass(frozen=True)
class CostForm:
    """A named closed form: ``coefficients(p, n)`` gives (a, b, c)."""

    name: str
    coefficients: Callable[[int, float], Coefficients]
    summary: str = ""

    @property
    def separates_gamma(self) -> bool:
        """Whether the form has a reduction term (γ can be fitted apart from β)."""
        return any(self.coefficients(p, 1 << 20)[2] for p in (2, 3, 4))


def fold_split(p: int) -> tuple[int, int]:
    """(⌊log2 p⌋, 1 if p is not a power of two): non-powers fold the extra ranks first."""
    if p < 1:
        raise ValueError(f"ranks must be >= 1, got {p}")
    k = p.bit_length() - 1
    return k, int(p != 1 << k)


def _hockney(p: int, n: float) -> Coefficients:
    return 1.0, float(n), 0.0


HOCKNEY = CostForm("hockney", _hockney, "alpha + n*beta (one message)")
GENERIC = CostForm("generic", _hockney, "alpha + n*beta (schedule unknown: the library's own)")

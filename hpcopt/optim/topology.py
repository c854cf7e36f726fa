"""Gossip graphs: neighbour lists of ring, torus, hypercube, exponential and complete graphs
and their Metropolis–Hastings weights (symmetric and doubly stochastic)."""

from __future__ import annotations

import math

import numpy as np

from hpcopt.errors import UsageError

__all__ = ["TOPOLOGIES", "metropolis_row", "mixing_matrix", "neighbors"]

TOPOLOGIES = ("ring", "torus", "hypercube", "exponential", "complete")


def _grid(p: int) -> tuple[int, int]:
    """rows × cols = p with rows the largest divisor ≤ √p."""
    rows = max(r for r in range(1, math.isqrt(p) + 1) if p % r == 0)
    return rows, p // rows


def _raw(name: str, i: int, p: int) -> set[int]:
    if name == "ring":
        return {(i - 1) % p, (i + 1) % p}
    if name == "torus":
        rows, cols = _grid(p)
        r, c = divmod(i, cols)
        return {
            ((r - 1) % rows) * cols + c, ((r + 1) % rows) * cols + c,
            r * cols + (c - 1) % cols, r * cols + (c + 1) % cols,
        }  # fmt: skip
    if name == "hypercube":
        if p & (p - 1):
            raise UsageError(f"hypercube needs a power-of-two rank count, not {p}; try exponential")
        return {i ^ (1 << k) for k in range(p.bit_length() - 1)}
    if name == "exponential":
        hops = [1 << k for k in range(max(1, (p - 1).bit_length()))]
        return {(i + h) % p for h in hops} | {(i - h) % p for h in hops}
    if name == "complete":
        return set(range(p))
    raise UsageError(f"unknown topology {name!r}; choose from: {', '.join(TOPOLOGIES)}")


def neighbors(name: str, i: int, p: int) -> list[int]:
    """Sorted neighbours of rank i (itself excluded) in the undirected graph ``name``."""
    if p < 1 or not 0 <= i < p:
        raise UsageError(f"rank {i} is not in [0, {p})")
    return sorted(_raw(name, i, p) - {i})


def metropolis_row(name: str, i: int, p: int) -> tuple[float, dict[int, float]]:
    """(w_ii, {j: w_ij}) with w_ij = 1 / (1 + max(deg_i, deg_j)) for each neighbour j."""
    mine = neighbors(name, i, p)
    row = {j: 1.0 / (1 + max(len(mine), len(neighbors(name, j, p)))) for j in mine}
    return 1.0 - sum(row.values()), row


def mixing_matrix(name: str, p: int) -> np.ndarray:
    """The p×p gossip matrix W of ``name`` (for tests and analysis)."""
    w = np.zeros((p, p))
    for i in range(p):
        w[i, i], row = metropolis_row(name, i, p)
        for j, value in row.items():
            w[i, j] = value
    return w

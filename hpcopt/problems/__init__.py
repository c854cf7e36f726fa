"""Deterministic sharded optimization problems: data, local objectives, global references."""

from __future__ import annotations

from hpcopt.problems.base import Comm, Problem, Reference, Shard
from hpcopt.problems.linear import LeastSquares, LogisticRegression
from hpcopt.problems.mlp import MLP
from hpcopt.problems.registry import available, get_problem, parse_spec, register

__all__ = [
    "MLP",
    "Comm",
    "LeastSquares",
    "LogisticRegression",
    "Problem",
    "Reference",
    "Shard",
    "available",
    "get_problem",
    "parse_spec",
    "register",
]

register(LeastSquares.name, LeastSquares)
register(LogisticRegression.name, LogisticRegression)
register(MLP.name, MLP)

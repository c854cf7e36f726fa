"""Deterministic sharded optimization problems: data, local objectives, global references."""

from __future__ import annotations

from hpcopt.problems.base import Comm, Problem, Reference, Shard
from hpcopt.problems.linear import LeastSquares, LogisticRegression
from hpcopt.problems.mlp import MLP
from hpcopt.problems.registry import PROBLEMS, available, get_problem, register

__all__ = [
    "MLP",
    "PROBLEMS",
    "Comm",
    "LeastSquares",
    "LogisticRegression",
    "Problem",
    "Reference",
    "Shard",
    "available",
    "get_problem",
    "register",
]

for _problem in (LeastSquares, LogisticRegression, MLP):
    register(_problem.name, _problem)

"""Distributed optimizers in a registry: sync, local, dsgd, choco, easgd, lag, lag-ps, async.

An algorithm is selected by a spec such as ``local:steps=4,participation=0.5``;
:func:`check` refuses, on every rank before any communication, what it cannot run, and
:func:`get_optimizer` builds it. :func:`register` adds user algorithms (a subclass of
:class:`Optimizer` whose own options are keyword arguments after comm, problem, cfg).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from mpi4py import MPI

from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, PHASES, Config, Ledger, Optimizer
from hpcopt.optim.schedule import Schedule
from hpcopt.optim.topology import mixing_matrix
from hpcopt.problems import Problem
from hpcopt.registry import Selection

__all__ = [
    "OPTIMIZERS",
    "PHASES",
    "Config",
    "Ledger",
    "Optimizer",
    "available",
    "check",
    "get_optimizer",
    "mixing_matrix",
    "register",
]

# The built-in algorithms, in registration order; each module registers itself.
BUILTIN = ("sync", "local", "dsgd", "choco", "easgd", "lag", "asynchronous")
for _module in BUILTIN:
    importlib.import_module(f"hpcopt.optim.{_module}")


def register(
    name: str, cls: type[Optimizer], parsers: Mapping[str, Callable[[str], Any]] | None = None
) -> None:
    """Add an algorithm: ``cls(comm, problem, cfg, **options)``; options parsed by ``parsers``
    (by name) or as their defaults' types."""
    OPTIMIZERS.register(name, cls, parsers=parsers)


def available() -> list[str]:
    """Registered algorithm names."""
    return OPTIMIZERS.names()


def check(spec: str, cfg: Config, ranks: int) -> Selection[Optimizer]:
    """The parsed algorithm spec, after its class refused what it cannot run (UsageError)."""
    if not cfg.lr > 0 or cfg.batch < 0:
        raise UsageError("--lr must be > 0 and --batch >= 0")
    Schedule(cfg.schedule, warmup=cfg.warmup, horizon=cfg.horizon)
    selection = OPTIMIZERS.select(spec)
    cls: Any = selection.entry.factory
    cls.check(cfg, ranks, **selection.kwargs())
    return selection


def get_optimizer(spec: str, comm: MPI.Comm, problem: Problem, cfg: Config) -> Optimizer:
    """This rank's optimizer for ``spec``, after :func:`check` and its problem check."""
    selection = check(spec, cfg, comm.size)
    cls: Any = selection.entry.factory
    cls.check_problem(problem, cfg, **selection.kwargs())
    return selection.build(comm=comm, problem=problem, cfg=cfg)

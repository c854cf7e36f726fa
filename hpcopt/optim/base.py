"""What every distributed optimizer shares: its settings, byte/time ledger and helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan, aggregate, plan
from hpcopt.backend import Scratch
from hpcopt.problems import Problem
from hpcopt.registry import Registry

__all__ = ["OPTIMIZERS", "PHASES", "Config", "Ledger", "Optimizer"]

PHASES = ("compute", "encode", "communicate", "decode")


@dataclass(frozen=True)
class Config:
    """The knobs every algorithm shares; an algorithm's own options come from its spec."""

    lr: float
    batch: int = 0  # 0: full local gradient
    encoder: str = "none"
    ef: bool = False
    method: str = "auto"
    allreduce: str = "native"
    seed: int = 0


class Ledger:
    """Bytes handed to MPI (in all and per link class where a path splits them), d-vector
    messages sent and seconds per phase on this rank."""

    __slots__ = ("bytes", "links", "messages", "t")

    def __init__(self) -> None:
        self.bytes = 0
        self.links: dict[str, int] = {}
        self.messages = 0.0
        self.t = dict.fromkeys(PHASES, 0.0)

    def add(
        self, nbytes: int, times: dict[str, float], messages: float = 1.0,
        links: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        """Account one communication: its bytes, message count and phase times."""
        self.bytes += int(nbytes)
        self.messages += messages
        for key, value in times.items():
            self.t[key] += value
        for key, count in (links or {}).items():
            self.links[key] = self.links.get(key, 0) + int(count)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block into phase ``name``."""
        t0 = MPI.Wtime()
        try:
            yield
        finally:
            self.t[name] += MPI.Wtime() - t0


class Optimizer:
    """One rank's state of a distributed algorithm: ``step(it)`` is one outer iteration.

    A subclass takes its own options as keyword arguments after (comm, problem, cfg) and
    registers itself in :data:`OPTIMIZERS`; :meth:`check` refuses, before anything runs,
    what it cannot do.
    """

    name: ClassVar[str] = ""
    replicated: ClassVar[bool] = False  # all ranks hold the same model after every step

    def __init__(self, comm: MPI.Comm, problem: Problem, cfg: Config) -> None:
        self.comm, self.problem, self.cfg = comm, problem, cfg
        self.x = problem.init_point().astype(np.float64)
        self.ledger = Ledger()
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x0B7, comm.rank]))
        self.plan = self.aggregation(cfg)
        self.codec = self.plan.codec(seed=cfg.seed, rank=comm.rank)
        self.scratch: dict[int, Scratch] = {}

    @classmethod
    def aggregation(cls, cfg: Config) -> Plan:
        """How this algorithm combines payloads (UsageError when it cannot with ``cfg``)."""
        return plan(cfg.encoder, ef=cfg.ef, method=cfg.method, algorithm=cfg.allreduce)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        """UsageError for settings this algorithm cannot run at ``ranks`` ranks."""
        cls.aggregation(cfg)

    def step(self, it: int) -> None:
        """One outer iteration (an SGD step, a local round, a gossip step)."""
        raise NotImplementedError

    def model(self) -> np.ndarray:
        """This rank's model; the evaluation point is its average over ranks."""
        return self.x

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """A stochastic (``batch`` > 0) or full local gradient, timed as compute."""
        with self.ledger.phase("compute"):
            batch = None
            if self.cfg.batch > 0:
                batch = self.problem.sample_batch(self.rng, self.cfg.batch)
            return self.problem.grad_local(x, batch)

    def allreduce_sum(self, v: np.ndarray, step: int, comm: MPI.Comm | None = None) -> np.ndarray:
        """Σ over ranks of float32 ``v`` along the plan; bytes and times go to the ledger."""
        comm = comm or self.comm
        scratch = self.scratch.setdefault(comm.size, Scratch())
        res = aggregate(comm, v, self.codec, self.plan, step=step, scratch=scratch,
                        compute_s=self.ledger.t["compute"])  # fmt: skip
        self.ledger.add(res.nbytes, res.times, links=res.links)
        return np.asarray(res.out, dtype=np.float32).reshape(-1)


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", context=("comm", "problem", "cfg"))

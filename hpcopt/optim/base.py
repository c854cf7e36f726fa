"""What every distributed optimizer shares: its settings, byte/time ledger and helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan, aggregate, plan
from hpcopt.backend import Scratch
from hpcopt.errors import UsageError
from hpcopt.optim.schedule import Schedule
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
    schedule: str = "constant"  # a spec of hpcopt.optim.schedule
    warmup: int = 0  # iterations of linear warm-up
    horizon: int = 1  # the iteration budget (cosine and step schedules need it)
    slow_rank: int = -1  # an emulated straggler: this rank's compute takes ``slowdown``×
    slowdown: float = 1.0
    bucket: int = 0  # bytes per gradient bucket (layered problems); 0: no bucketing


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
    drives_itself: ClassVar[bool] = False  # runs its own loop (drive) instead of step()
    buckets: ClassVar[bool] = False  # can bucket a layered gradient (--bucket)

    def __init__(self, comm: MPI.Comm, problem: Problem, cfg: Config) -> None:
        self.comm, self.problem, self.cfg = comm, problem, cfg
        self.x = problem.init_point().astype(np.float64)
        self.ledger = Ledger()
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x0B7, comm.rank]))
        self.plan = self.aggregation(cfg)
        self.codec = self.plan.codec(seed=cfg.seed, rank=comm.rank)
        self.scratch: dict[int, Scratch] = {}
        self.schedule = Schedule(cfg.schedule, warmup=cfg.warmup, horizon=cfg.horizon)
        self.in_time = True

    @classmethod
    def aggregation(cls, cfg: Config) -> Plan:
        """How this algorithm combines payloads (UsageError when it cannot with ``cfg``)."""
        return plan(cfg.encoder, ef=cfg.ef, method=cfg.method, algorithm=cfg.allreduce)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        """UsageError for settings this algorithm cannot run at ``ranks`` ranks."""
        cls.aggregation(cfg)
        if 0 < cfg.bucket < 4:
            raise UsageError(f"--bucket {cfg.bucket}: a bucket must hold at least one 4-byte "
                             "element")  # fmt: skip
        if cfg.bucket and not cls.buckets:
            raise UsageError(f"{cls.name} does not bucket gradients; --bucket needs --algo sync")

    @classmethod
    def check_problem(cls, problem: Problem, cfg: Config, **options: Any) -> None:
        """UsageError when this algorithm cannot run on ``problem``."""

    @classmethod
    def data_ranks(cls, ranks: int, **options: Any) -> int:
        """How many ranks hold data shards (all of them unless some only serve)."""
        return ranks

    def lr(self, it: int) -> float:
        """The step size at iteration ``it``: the base step times the schedule."""
        return self.cfg.lr * self.schedule(it)

    def step(self, it: int) -> None:
        """One outer iteration (an SGD step, a local round, a gossip step)."""
        raise NotImplementedError

    def drive(self, track: Any) -> None:
        """Run the whole training, feeding ``track`` (a run.Trajectory) its measurements."""
        raise NotImplementedError

    def model(self) -> np.ndarray:
        """This rank's model; the evaluation point is its average over ranks."""
        return self.x

    def gradient(self, x: np.ndarray, until: float | None = None) -> np.ndarray:
        """A stochastic (``batch`` > 0) or full local gradient, timed as compute;
        ``in_time`` says whether it was ready by the time ``until`` (a round deadline)."""
        with self.ledger.phase("compute"):
            t0 = MPI.Wtime()
            batch = None
            if self.cfg.batch > 0:
                batch = self.problem.sample_batch(self.rng, self.cfg.batch)
            g = self.problem.grad_local(x, batch)
            self.in_time = self.straggle(MPI.Wtime() - t0, until)
        return g

    def straggle(self, worked: float, until: float | None = None) -> bool:
        """On the emulated straggler, sleep (slowdown − 1)× ``worked`` seconds, at most until
        the time ``until``; False when that cut the sleep short (the work came too late)."""
        if self.comm.rank != self.cfg.slow_rank or self.cfg.slowdown <= 1.0:
            return until is None or MPI.Wtime() <= until
        extra = (self.cfg.slowdown - 1.0) * worked
        if until is not None and MPI.Wtime() + extra > until:
            time.sleep(max(0.0, until - MPI.Wtime()))
            return False
        time.sleep(extra)
        return True

    def summary(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Algorithm-specific record fields and arrays, the same on every rank (collective)."""
        return {}, {}

    def allreduce_sum(self, v: np.ndarray, step: int, comm: MPI.Comm | None = None) -> np.ndarray:
        """Σ over ranks of float32 ``v`` along the plan; bytes and times go to the ledger."""
        comm = comm or self.comm
        scratch = self.scratch.setdefault(comm.size, Scratch())
        res = aggregate(comm, v, self.codec, self.plan, step=step, scratch=scratch,
                        compute_s=self.ledger.t["compute"])  # fmt: skip
        self.ledger.add(res.nbytes, res.times, links=res.links)
        return np.asarray(res.out, dtype=np.float32).reshape(-1)


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", context=("comm", "problem", "cfg"))

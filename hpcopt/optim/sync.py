"""Data-parallel mini-batch SGD (or GD) with a compressed allreduce of the gradients, or, with
a round deadline, the mean of the gradients that were ready in time."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import RootSum, plan
from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, Config, Optimizer
from hpcopt.problems import Problem
from hpcopt.specs import nonnegative_real

__all__ = ["SyncSGD"]


class SyncSGD(Optimizer):
    """x ← x − lr·(1/p)·Σ_i C(g_i): one compressed allreduce per step (optional EF).

    With ``deadline`` > 0 (seconds from the start of a round) a rank whose gradient is not
    ready by then sends nothing; the others' gradients go to rank 0 (the root path), and
    x ← x − lr·(1/k)·Σ over the k in time (no step when k = 0). An emulated straggler
    (``--straggler``) stops sleeping at the deadline; a genuinely slow rank is dropped when
    it finishes late, but the round still waits for it.
    """

    name = "sync"
    replicated = True

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, deadline: float = 0.0
    ) -> None:
        super().__init__(comm, problem, cfg)
        self.deadline = deadline
        self.late = 0
        if deadline:
            self.plan = plan(cfg.encoder, ef=cfg.ef, method="root", algorithm=cfg.allreduce)
            self.codec = self.plan.codec(seed=cfg.seed, rank=comm.rank)
            self.agg = RootSum(comm, self.x.size, self.codec)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        super().check(cfg, ranks)
        if options.get("deadline") and cfg.method not in ("auto", "root"):
            raise UsageError(f"sync with a deadline aggregates at a root: --method {cfg.method} "
                             "does not apply")  # fmt: skip
        if options.get("deadline"):
            plan(cfg.encoder, ef=cfg.ef, method="root", algorithm=cfg.allreduce)

    def step(self, it: int) -> None:
        if self.deadline:
            self._step_by_deadline(it)
            return
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            g32 = g.astype(np.float32)
        total = self.allreduce_sum(g32, it)
        with self.ledger.phase("compute"):
            self.x -= (self.lr(it) / self.comm.size) * total

    def _step_by_deadline(self, it: int) -> None:
        g = self.gradient(self.x, until=MPI.Wtime() + self.deadline)
        with self.ledger.phase("compute"):
            payload = g.astype(np.float32) if self.in_time else None
            self.late += not self.in_time
        res = self.agg(payload, it)
        arrived = int(self.agg.senders.sum())
        self.ledger.add(res.nbytes, res.times, messages=self.agg.messages)
        if arrived:
            with self.ledger.phase("compute"):
                self.x -= (self.lr(it) / arrived) * res.out

    def summary(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.deadline:
            return {}, {}
        return {"late": self.comm.allreduce(self.late, op=MPI.SUM)}, {}


OPTIMIZERS.register(SyncSGD.name, SyncSGD, parsers={"deadline": nonnegative_real})

"""Data-parallel mini-batch SGD (or GD) with a compressed allreduce of the gradients, or, with
a round deadline, the mean of the gradients that were ready in time."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import RootSum, plan
from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, Config, Optimizer
from hpcopt.optim.buckets import BUCKET_ENCODERS, Buckets
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

    With ``--bucket`` (layered problems) the gradient is summed in buckets that start as the
    backward pass fills them (:class:`hpcopt.optim.buckets.Buckets`).
    """

    name = "sync"
    replicated = True
    buckets = True

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
        if cfg.bucket:
            self.bucketed = Buckets(comm, self.x.size, cfg.bucket, self.plan, cfg.seed)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        super().check(cfg, ranks)
        if options.get("deadline") and cfg.method not in ("auto", "root"):
            raise UsageError(f"sync with a deadline aggregates at a root: --method {cfg.method} "
                             "does not apply")  # fmt: skip
        if options.get("deadline"):
            plan(cfg.encoder, ef=cfg.ef, method="root", algorithm=cfg.allreduce)
        kind = cfg.encoder.split(":")[0].strip()
        if cfg.bucket and (kind not in BUCKET_ENCODERS or options.get("deadline")):
            raise UsageError(f"--bucket sums buckets with MPI_Iallreduce as DDP's hooks do: "
                             f"encoders {', '.join(BUCKET_ENCODERS)}, no deadline")  # fmt: skip
        if cfg.bucket and (cfg.method != "auto" or cfg.allreduce != "native"):
            raise UsageError("--bucket uses MPI's own Iallreduce: --method and --allreduce "
                             "do not apply")  # fmt: skip

    @classmethod
    def check_problem(cls, problem: Problem, cfg: Config, **options: Any) -> None:
        if cfg.bucket and not hasattr(problem, "backward"):
            raise UsageError(f"--bucket needs a problem whose gradient comes layer by layer "
                             f"(mlp), not {problem.name}")  # fmt: skip

    def step(self, it: int) -> None:
        if self.deadline:
            self._step_by_deadline(it)
            return
        if self.cfg.bucket:
            self._step_bucketed(it)
            return
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            g32 = g.astype(np.float32)
        total = self.allreduce_sum(g32, it)
        with self.ledger.phase("compute"):
            self.x -= (self.lr(it) / self.comm.size) * total

    def _step_bucketed(self, it: int) -> None:
        batch = None
        if self.cfg.batch > 0:
            batch = self.problem.sample_batch(self.rng, self.cfg.batch)
        parts = self.problem.backward(self.x, batch)  # type: ignore[attr-defined]
        total = self.bucketed.reduce(parts, self.ledger)
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
        fields: dict[str, Any] = {}
        if self.deadline:
            fields["late"] = self.comm.allreduce(self.late, op=MPI.SUM)
        if self.cfg.bucket:
            fields["buckets"] = self.bucketed.count
        return fields, {}


OPTIMIZERS.register(SyncSGD.name, SyncSGD, parsers={"deadline": nonnegative_real})

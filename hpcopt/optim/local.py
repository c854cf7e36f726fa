"""Local SGD / FedAvg: H local steps, then the participants average their updates."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import RootSum, plan
from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, Config, Optimizer
from hpcopt.problems import Problem
from hpcopt.specs import fraction, nonnegative_real, positive_int, unit_interval

__all__ = ["LocalSGD"]

_TAG = 523


class LocalSGD(Optimizer):
    """One round: chosen ranks run H steps from x; x ← x − mean_i C(x − x_i) on all ranks.

    Participants and stragglers are drawn each round from a generator seeded by
    (seed, round) that every rank shares. A straggler runs a random 1..H local steps and
    sleeps ``delay`` seconds (counted as compute). With partial participation
    the lowest participant sends the float32 mean update to every non-participant.

    With ``deadline`` > 0 (seconds from the start of a round) the round keeps only the
    updates ready in time: a participant still working then (a straggler's sleep is cut at
    the deadline) sends nothing, the others' updates go to rank 0 (the root path), and
    x ← x − (1/k)·Σ over the k in time.
    """

    name = "local"
    replicated = True

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, steps: int = 1,
        participation: float = 1.0, stragglers: float = 0.0, delay: float = 0.0,
        deadline: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(comm, problem, cfg)
        self.steps, self.participation = steps, participation
        self.stragglers, self.delay, self.deadline = stragglers, delay, deadline
        self.groups: dict[tuple[int, ...], MPI.Comm] = {}
        self.late = 0
        if deadline:
            self.plan = plan(cfg.encoder, ef=cfg.ef, method="root", algorithm=cfg.allreduce)
            self.codec = self.plan.codec(seed=cfg.seed, rank=comm.rank)
            self.agg = RootSum(comm, self.x.size, self.codec)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        super().check(cfg, ranks)
        if options.get("deadline"):
            if cfg.method not in ("auto", "root"):
                raise UsageError(f"local with a deadline aggregates at a root: --method "
                                 f"{cfg.method} does not apply")  # fmt: skip
            plan(cfg.encoder, ef=cfg.ef, method="root", algorithm=cfg.allreduce)

    def draw(self, it: int) -> tuple[list[int], dict[int, int]]:
        """This round's participants and each straggler's number of local steps."""
        p = self.comm.size
        gen = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, 0x10CA1, it]))
        m = max(1, round(self.participation * p))
        members = sorted(int(r) for r in gen.choice(p, size=m, replace=False))
        slow = gen.choice(members, size=round(self.stragglers * m), replace=False)
        steps = gen.integers(1, self.steps + 1, size=slow.size)
        return members, {int(r): int(s) for r, s in zip(slow, steps, strict=True)}

    def _group(self, members: list[int]) -> MPI.Comm:
        """A communicator of the participants (made once per distinct set, by them only)."""
        if len(members) == self.comm.size:
            return self.comm
        key = tuple(members)
        if key not in self.groups:
            group = self.comm.Get_group().Incl(members)
            self.groups[key] = cast(MPI.Intracomm, self.comm).Create_group(group, tag=_TAG)
            group.Free()
        return self.groups[key]

    def local_update(self, it: int, steps: int, sleep: float, until: float | None) -> np.ndarray:
        """x − y after ``steps`` local steps from x and ``sleep`` seconds (cut at ``until``);
        ``in_time`` says whether the update was ready by ``until``."""
        y, in_time = self.x.copy(), True
        for _ in range(steps):
            g = self.gradient(y, until)
            in_time = in_time and self.in_time
            with self.ledger.phase("compute"):
                y -= self.lr(it) * g
        with self.ledger.phase("compute"):
            if sleep > 0:
                rest = sleep if until is None else min(sleep, max(0.0, until - MPI.Wtime()))
                time.sleep(rest)
            self.in_time = in_time and (until is None or MPI.Wtime() <= until)
            return (self.x - y).astype(np.float32)

    def step(self, it: int) -> None:
        members, slow = self.draw(it)
        rank = self.comm.rank
        if self.deadline:
            self._step_by_deadline(it, members, slow)
            return
        mean = np.empty(self.x.size, dtype=np.float32)
        if rank in members:
            sleep = self.delay if rank in slow else 0.0
            delta = self.local_update(it, slow.get(rank, self.steps), sleep, None)
            total = self.allreduce_sum(delta, it, self._group(members))
            np.multiply(total, np.float32(1.0 / len(members)), out=mean)
        self._share(mean, members)
        with self.ledger.phase("compute"):
            self.x -= mean

    def _step_by_deadline(self, it: int, members: list[int], slow: dict[int, int]) -> None:
        """The mean of the updates that were ready by the deadline, through the root."""
        until, rank, delta = MPI.Wtime() + self.deadline, self.comm.rank, None
        if rank in members:
            sleep = self.delay if rank in slow else 0.0
            delta = self.local_update(it, slow.get(rank, self.steps), sleep, until)
            if not self.in_time:
                delta, self.late = None, self.late + 1
        res = self.agg(delta, it)
        self.ledger.add(res.nbytes, res.times, messages=self.agg.messages)
        arrived = int(self.agg.senders.sum())
        if arrived:
            with self.ledger.phase("compute"):
                self.x -= np.float32(1.0 / arrived) * res.out

    def summary(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if not self.deadline:
            return {}, {}
        return {"late": self.comm.allreduce(self.late, op=MPI.SUM)}, {}

    def _share(self, mean: np.ndarray, members: list[int]) -> None:
        """The lowest participant sends the mean update to each non-participant."""
        rank, others = self.comm.rank, sorted(set(range(self.comm.size)) - set(members))
        if not others or (rank != members[0] and rank not in others):
            return
        with self.ledger.phase("communicate"):
            if rank == members[0]:
                reqs = [self.comm.Isend(mean, j, _TAG) for j in others]
                MPI.Request.Waitall(reqs)
                self.ledger.add(mean.nbytes * len(others), {}, messages=len(others))
            else:
                self.comm.Recv(mean, members[0], _TAG)


OPTIMIZERS.register(
    LocalSGD.name,
    LocalSGD,
    parsers={"steps": positive_int, "participation": fraction, "stragglers": unit_interval,
             "delay": nonnegative_real, "deadline": nonnegative_real},
)  # fmt: skip

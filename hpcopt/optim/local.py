"""Local SGD / FedAvg: H local steps, then the participants average their updates."""

from __future__ import annotations

import time
from typing import cast

import numpy as np
from mpi4py import MPI

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
    """

    name = "local"
    replicated = True

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, steps: int = 1,
        participation: float = 1.0, stragglers: float = 0.0, delay: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(comm, problem, cfg)
        self.steps, self.participation = steps, participation
        self.stragglers, self.delay = stragglers, delay
        self.groups: dict[tuple[int, ...], MPI.Comm] = {}

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

    def step(self, it: int) -> None:
        members, slow = self.draw(it)
        rank = self.comm.rank
        mean = np.empty(self.x.size, dtype=np.float32)
        if rank in members:
            y = self.x.copy()
            for _ in range(slow.get(rank, self.steps)):
                g = self.gradient(y)
                with self.ledger.phase("compute"):
                    y -= self.cfg.lr * g
            if rank in slow and self.delay > 0:
                with self.ledger.phase("compute"):
                    time.sleep(self.delay)
            with self.ledger.phase("compute"):
                delta = (self.x - y).astype(np.float32)
            total = self.allreduce_sum(delta, it, self._group(members))
            np.multiply(total, np.float32(1.0 / len(members)), out=mean)
        self._share(mean, members)
        with self.ledger.phase("compute"):
            self.x -= mean

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
             "delay": nonnegative_real},
)  # fmt: skip

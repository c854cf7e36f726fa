"""Elastic averaging SGD: local steps pulled towards a centre variable every τ steps."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from hpcopt.optim.base import OPTIMIZERS, Config, Optimizer
from hpcopt.problems import Problem
from hpcopt.specs import open_unit_interval, positive_int

__all__ = ["EASGD"]


class EASGD(Optimizer):
    """Every τ steps: d_i = x_i − x̃; x_i −= α·d_i; x̃ += α·Σ_i C(d_i) (one allreduce)."""

    name = "easgd"

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, alpha: float = 0.1, tau: int = 4
    ) -> None:
        super().__init__(comm, problem, cfg)
        self.alpha, self.tau = alpha, tau
        self.center = self.x.copy()

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            self.x -= self.lr(it) * g
        if (it + 1) % self.tau:
            return
        with self.ledger.phase("compute"):
            diff = self.x - self.center
        total = self.allreduce_sum(diff.astype(np.float32), it)
        with self.ledger.phase("compute"):
            self.x -= self.alpha * diff
            self.center += self.alpha * total


OPTIMIZERS.register(EASGD.name, EASGD, parsers={"alpha": open_unit_interval, "tau": positive_int})

"""Elastic averaging SGD: local steps pulled towards a centre variable every τ steps."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from hpcopt.optim.base import Config, Optimizer
from hpcopt.problems import Problem

__all__ = ["EASGD"]


class EASGD(Optimizer):
    """Every τ steps: d_i = x_i − x̃; x_i −= α·d_i; x̃ += α·Σ_i C(d_i) (one allreduce)."""

    name = "easgd"

    def __init__(self, comm: MPI.Comm, problem: Problem, cfg: Config) -> None:
        super().__init__(comm, problem, cfg)
        self.center = self.x.copy()

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            self.x -= self.cfg.lr * g
        if (it + 1) % self.cfg.tau:
            return
        with self.ledger.phase("compute"):
            diff = self.x - self.center
        total = self.allreduce_sum(diff.astype(np.float32), it)
        with self.ledger.phase("compute"):
            self.x -= self.cfg.alpha * diff
            self.center += self.cfg.alpha * total

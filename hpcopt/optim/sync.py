"""Data-parallel mini-batch SGD (or GD) with a compressed allreduce of the gradients."""

from __future__ import annotations

import numpy as np

from hpcopt.optim.base import OPTIMIZERS, Optimizer

__all__ = ["SyncSGD"]


class SyncSGD(Optimizer):
    """x ← x − lr·(1/p)·Σ_i C(g_i): one compressed allreduce per step (optional EF)."""

    name = "sync"
    replicated = True

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            g32 = g.astype(np.float32)
        total = self.allreduce_sum(g32, it)
        with self.ledger.phase("compute"):
            self.x -= (self.cfg.lr / self.comm.size) * total


OPTIMIZERS.register(SyncSGD.name, SyncSGD)

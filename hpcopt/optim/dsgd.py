"""Decentralized SGD: a local step, then gossip averaging with the neighbours."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from hpcopt.optim.base import Config, Optimizer
from hpcopt.optim.gossip import Gossip
from hpcopt.problems import Problem

__all__ = ["DSGD"]


class DSGD(Optimizer):
    """y_i = x_i − lr·g_i(x_i); x_i ← w_ii·y_i + Σ_j w_ij·C(y_j) (adapt, then combine)."""

    name = "dsgd"

    def __init__(self, comm: MPI.Comm, problem: Problem, cfg: Config) -> None:
        super().__init__(comm, problem, cfg)
        assert cfg.topology is not None
        self.gossip = Gossip(comm, cfg.topology, cfg.exchange)

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            y = self.x - self.cfg.lr * g
        with self.ledger.phase("encode"):
            payload = self.encoder.encode(y.astype(np.float32), it)
        mixed = self.gossip.mix(payload, self.encoder, self.ledger, it)
        with self.ledger.phase("compute"):
            self.x = self.gossip.self_weight * y + mixed

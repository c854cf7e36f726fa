"""CHOCO-SGD: gossip of compressed differences to public copies x̂ of the models."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from hpcopt.optim.base import Config
from hpcopt.optim.gossip import GossipOptimizer, register_gossip
from hpcopt.problems import Problem
from hpcopt.specs import fraction

__all__ = ["Choco"]


class Choco(GossipOptimizer):
    """q_i = Q(x_i − x̂_i); x̂_j += q_j (j ∈ N_i ∪ {i}); x_i += γ·Σ_j w_ij(x̂_j − x̂_i).

    Only s_i = Σ_j w_ij·x̂_j (self included) is kept, not every neighbour's x̂_j: since
    rows of W sum to one, Σ_j w_ij(x̂_j − x̂_i) = s_i − x̂_i.
    """

    name = "choco"

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, topology: str = "ring",
        exchange: str = "p2p", gamma: float = 0.5,
    ) -> None:  # fmt: skip
        super().__init__(comm, problem, cfg, topology=topology, exchange=exchange)
        self.gamma = gamma
        self.xhat = np.zeros_like(self.x)
        self.s = np.zeros_like(self.x)

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            self.x -= self.lr(it) * g
            diff = (self.x - self.xhat).astype(np.float32)
        with self.ledger.phase("encode"):
            payload = self.codec.encode(diff, it)
            own = self.codec.decode(payload).reshape(-1)
        mixed = self.gossip.mix(payload, self.codec, self.ledger, it)
        with self.ledger.phase("compute"):
            self.xhat += own
            self.s += self.gossip.self_weight * own + mixed
            self.x += self.gamma * (self.s - self.xhat)


register_gossip(Choco, gamma=fraction)

"""Decentralized SGD: a local step, then gossip averaging with the neighbours."""

from __future__ import annotations

import numpy as np

from hpcopt.optim.gossip import GossipOptimizer, register_gossip

__all__ = ["DSGD"]


class DSGD(GossipOptimizer):
    """y_i = x_i − lr·g_i(x_i); x_i ← w_ii·y_i + Σ_j w_ij·C(y_j) (adapt, then combine)."""

    name = "dsgd"

    def step(self, it: int) -> None:
        g = self.gradient(self.x)
        with self.ledger.phase("compute"):
            y = self.x - self.lr(it) * g
        with self.ledger.phase("encode"):
            payload = self.codec.encode(y.astype(np.float32), it)
        mixed = self.gossip.mix(payload, self.codec, self.ledger, it)
        with self.ledger.phase("compute"):
            self.x = self.gossip.self_weight * y + mixed


register_gossip(DSGD)

"""Neighbour exchange of encoded payloads: point-to-point or MPI neighbourhood collectives."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan, plan
from hpcopt.aggregation.wire import as_bytes, padded
from hpcopt.backend import Scratch
from hpcopt.encoders import Codec, Payload
from hpcopt.encoders.base import decode_sum
from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, Config, Ledger, Optimizer
from hpcopt.optim.topology import TOPOLOGIES, metropolis_row, neighbors
from hpcopt.problems import Problem
from hpcopt.specs import choice

__all__ = ["EXCHANGES", "Gossip", "GossipOptimizer", "register_gossip"]

EXCHANGES = ("p2p", "neighbor")
_TAG = 417


class Gossip:
    """This rank's row of the Metropolis matrix and the exchange with its neighbours."""

    def __init__(self, comm: MPI.Comm, topology: str, exchange: str) -> None:
        if exchange not in EXCHANGES:
            raise UsageError(f"unknown exchange {exchange!r}; choose from: {', '.join(EXCHANGES)}")
        self.comm, self.exchange = comm, exchange
        self.self_weight, row = metropolis_row(topology, comm.rank, comm.size)
        self.peers = sorted(row)
        self.weights = [row[j] for j in self.peers]
        self.scratch = Scratch()
        self.graph: MPI.Topocomm | None = None
        if exchange == "neighbor":
            world = cast(MPI.Intracomm, comm)
            self.graph = world.Create_dist_graph_adjacent(self.peers, self.peers, reorder=False)

    def _sizes(self, own: int) -> np.ndarray:
        """Every neighbour's payload size (8 bytes each way), in peer order."""
        mine = np.array([own], dtype=np.int64)
        sizes = np.empty(len(self.peers), dtype=np.int64)
        if self.graph is not None:
            self.graph.Neighbor_allgather(mine, sizes)
        else:
            reqs = [self.comm.Irecv(sizes[k : k + 1], j, _TAG) for k, j in enumerate(self.peers)]
            reqs += [self.comm.Isend(mine, j, _TAG) for j in self.peers]
            MPI.Request.Waitall(reqs)
        return sizes

    def _move(self, own: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send ``own`` to every neighbour and receive theirs into one buffer."""
        room = padded(sizes)
        displs = (np.cumsum(room) - room).astype(np.int64)
        recv = self.scratch.get("recv", int(room.sum()), np.uint8)
        if self.graph is not None:
            self.graph.Neighbor_allgatherv([own, MPI.BYTE], [recv, (sizes, displs), MPI.BYTE])
        else:
            reqs = [
                self.comm.Irecv([recv[a : a + n], MPI.BYTE], j, _TAG + 1)
                for j, a, n in zip(self.peers, displs, sizes, strict=True)
            ]
            reqs += [self.comm.Isend([own, MPI.BYTE], j, _TAG + 1) for j in self.peers]
            MPI.Request.Waitall(reqs)
        return recv, displs

    def mix(self, payload: Payload, encoder: Codec, ledger: Ledger, step: int) -> np.ndarray:
        """Σ_j w_ij·decode(payload_j) over the neighbours j (one decode-and-sum, into a work
        array valid until the next call); bytes and times to ``ledger``."""
        d = payload.size
        t0 = MPI.Wtime()
        own = as_bytes(payload, self.scratch, "send")
        t1 = MPI.Wtime()
        nbytes = own.nbytes * len(self.peers)
        fixed = encoder.wire_bytes(d)
        if fixed is None and self.peers:
            sizes = self._sizes(own.nbytes)
            nbytes += 8 * len(self.peers)
        else:
            sizes = np.full(len(self.peers), own.nbytes, dtype=np.int64)
        recv, displs = self._move(own, sizes)
        t2 = MPI.Wtime()
        peers = [
            encoder.from_bytes(recv[a : a + n], payload.shape, step)
            for a, n in zip(displs.tolist(), sizes.tolist(), strict=True)
        ]
        acc = decode_sum(encoder, peers, self.scratch.get("acc", d, np.float32),
                         weights=self.weights)  # fmt: skip
        t3 = MPI.Wtime()
        times = {"encode": t1 - t0, "communicate": t2 - t1, "decode": t3 - t2}
        ledger.add(nbytes, times, messages=len(self.peers))
        return acc


class GossipOptimizer(Optimizer):
    """An algorithm that exchanges encoded payloads with its neighbours in a gossip graph."""

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, topology: str = "ring",
        exchange: str = "p2p",
    ) -> None:  # fmt: skip
        super().__init__(comm, problem, cfg)
        self.gossip = Gossip(comm, topology, exchange)

    @classmethod
    def aggregation(cls, cfg: Config) -> Plan:
        if cfg.method not in ("auto", "gossip"):
            raise UsageError(f"{cls.name} gossips payloads: --method {cfg.method} does not apply")
        return plan(cfg.encoder, ef=cfg.ef, method="gossip", algorithm=cfg.allreduce)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        super().check(cfg, ranks)
        neighbors(options.get("topology", "ring"), 0, ranks)


def register_gossip(cls: type[GossipOptimizer], **parsers: Any) -> None:
    """Register a gossip algorithm with the topology and exchange options checked."""
    OPTIMIZERS.register(
        cls.name,
        cls,
        parsers={"topology": choice(*TOPOLOGIES), "exchange": choice(*EXCHANGES), **parsers},
    )

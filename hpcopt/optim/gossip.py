"""Neighbour exchange of encoded payloads: point-to-point or MPI neighbourhood collectives."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.encoders import Payload
from hpcopt.errors import UsageError
from hpcopt.optim.base import Ledger
from hpcopt.optim.topology import metropolis_row

__all__ = ["EXCHANGES", "Gossip"]

EXCHANGES = ("p2p", "neighbor")
_TAG = 417


def _as_bytes(payload: Payload, scratch: Scratch) -> np.ndarray:
    """The payload's buffers as one uint8 array (a view when there is a single buffer)."""
    if len(payload.buffers) == 1:
        return np.ascontiguousarray(payload.buffers[0]).reshape(-1).view(np.uint8)
    out = scratch.get("send", payload.nbytes, np.uint8)
    at = 0
    for b in payload.buffers:
        flat = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
        out[at : at + flat.size] = flat
        at += flat.size
    return out


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
            self.graph = comm.Create_dist_graph_adjacent(self.peers, self.peers, reorder=False)

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
        room = -(-sizes // 8) * 8  # 8-byte aligned slots keep every buffer view aligned
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

    def mix(self, payload: Payload, encoder: Any, ledger: Ledger, step: int) -> np.ndarray:
        """Σ_j w_ij·decode(payload_j) over the neighbours j; bytes and times to ``ledger``."""
        d = payload.size
        t0 = MPI.Wtime()
        own = _as_bytes(payload, self.scratch)
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
        acc = np.zeros(d, dtype=np.float32)
        work = self.scratch.get("work", d, np.float32)
        for w, a, n in zip(self.weights, displs, sizes, strict=True):
            peer = encoder.from_bytes(recv[a : a + n], payload.shape, step)
            acc += np.float32(w) * encoder.decode(peer, out=work).reshape(-1)
        t3 = MPI.Wtime()
        times = {"encode": t1 - t0, "communicate": t2 - t1, "decode": t3 - t2}
        ledger.add(nbytes, times, messages=len(self.peers))
        return acc

"""The neighbor kernel: one gossip round, every rank's block to each of its graph neighbours.

For each topology of the gossip optimizers (ring, torus, hypercube, exponential, complete)
it times the exchange as an MPI neighbourhood collective on a distributed-graph
communicator (``native``: MPI_Neighbor_allgather, timed by the C core where it works) and
as point-to-point Isend/Irecv to and from each neighbour (``p2p``). Size is the block each
rank sends to every neighbour; algbw counts the blocks a rank receives (size x degree).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import timer as ctimer
from hpcopt.backend import Backend, aligned_full, sync, to_host
from hpcopt.bench.buffers import RotatingSets
from hpcopt.bench.harness import Case
from hpcopt.bench.program import KernelParser, common_parser, run_sweep_kernel
from hpcopt.bench.verify import check_block, count_mismatches
from hpcopt.collectives.native import native_spec
from hpcopt.errors import UsageError
from hpcopt.kernels.collective import add_overlap, check_mode
from hpcopt.optim.topology import TOPOLOGIES, neighbors

__all__ = ["EXCHANGES", "NeighborCase", "cases", "main", "parser"]

KERNEL = "neighbor"
EXCHANGES = ("native", "p2p")
DTYPES = ("uint8", "int32", "float32", "float64")
TAG = 7


class NeighborBuffers(RotatingSets):
    """One size of one exchange: a send block and a receive block per neighbour, per set."""

    def __init__(self, case: NeighborCase, size_bytes: int) -> None:
        self.case, itemsize = case, np.dtype(case.dtype).itemsize
        self.count = size_bytes // itemsize
        self.size_bytes = self.count * itemsize
        self.peers = case.peers
        self.native = case.algo == "native"
        self.wire_kind = "nominal" if self.native else "counted"
        self.timing_comm = case.graph() if self.native else None
        self.host_only = not case.backend.on_gpu
        self.sets = [self.new_set()]
        self.rebind()

    def new_set(self) -> tuple[Any, Any]:
        xp, n = self.case.backend.xp, self.count
        return (aligned_full(xp, n, 0, self.case.dtype),
                aligned_full(xp, n * len(self.peers), 0, self.case.dtype))  # fmt: skip

    def _call_for(self, send: Any, recv: Any) -> Callable[[], Any]:
        n, graph = self.count, self.case.graph()
        if self.native:
            send_spec, recv_spec = native_spec(send, n), native_spec(recv, n)
            return lambda: graph.Neighbor_allgather(send_spec, recv_spec)
        comm = self.case.comm
        requests = [comm.Recv_init(recv[k * n : (k + 1) * n], q, TAG)
                    for k, q in enumerate(self.peers)]  # fmt: skip
        requests += [comm.Send_init(send, q, TAG) for q in self.peers]

        def exchange() -> None:
            MPI.Prequest.Startall(requests)
            MPI.Request.Waitall(requests)

        exchange.requests = requests  # type: ignore[attr-defined]
        return exchange

    def bound_calls(self) -> list[Callable[[], Any]]:
        self._free()
        return [self._call_for(send, recv) for send, recv in self.sets]

    def run(self) -> int:
        self.next_call()
        return self.count * self.case.itemsize * len(self.peers)

    def sync(self) -> None:
        sync(self.sets[0][0])

    def c_call(self) -> ctimer.TimedCall | None:
        if not self.native or self.case.backend.stage_through_host():
            return None
        return ctimer.TimedCall(
            "neighbor_allgather", self.count, [s for s, _ in self.sets], [r for _, r in self.sets],
            datatype=MPI.Datatype.fromcode(np.dtype(self.case.dtype).char), mode=self.case.mode,
        )  # fmt: skip

    def check(self) -> dict[str, Any]:
        """Block k of the receive buffer must be neighbour k's data."""
        n, (send, recv) = self.count, self.sets[0]
        send[...] = self.case.backend.xp.asarray(check_block(n, self.case.dtype, self.case.rank, 0))
        recv.fill(0)
        self.sync()
        self.calls[0]()
        self.sync()
        want = [check_block(n, self.case.dtype, q, 0) for q in self.peers]
        expected = np.concatenate(want) if want else np.empty(0, self.case.dtype)
        return {"wrong": count_mismatches(to_host(recv), expected)}

    def iteration_bytes(self) -> int:
        return self.size_bytes * max(self.case.degree, 1)

    def _free(self) -> None:
        for call in getattr(self, "calls", []):
            for req in getattr(call, "requests", ()):
                req.Free()

    def __del__(self) -> None:
        self._free()


class NeighborCase(Case):
    """One topology and one way of exchanging, timed by the harness."""

    kernel = KERNEL

    def __init__(self, comm: MPI.Comm, backend: Backend, topology: str, algo: str, dtype: str,
                 mode: str) -> None:  # fmt: skip
        self.comm, self.backend, self.topology, self.algo = comm, backend, topology, algo
        self.dtype, self.mode, self.rank = dtype, mode, comm.rank
        self.itemsize = np.dtype(dtype).itemsize
        self.peers = neighbors(topology, comm.rank, comm.size)
        self.degree = max(len(neighbors(topology, q, comm.size)) for q in range(comm.size))
        self.note = "size: the block each rank sends to every neighbour; algbw: size x degree"
        self.console = "overlap" if mode == "nonblocking" else "neighbor"
        self._graph: MPI.Topocomm | None = None

    def graph(self) -> MPI.Topocomm:
        """The distributed-graph communicator of the topology, made on first use (collective)."""
        if self._graph is None:
            world: Any = self.comm
            self._graph = world.Create_dist_graph_adjacent(self.peers, self.peers, reorder=False)
        return self._graph

    def algbw_bytes(self, size_bytes: int, ranks: int) -> int:
        return size_bytes * self.degree

    def record_fields(self) -> dict[str, Any]:
        return {"device": self.backend.device, "topology": self.topology,
                "degree": self.degree, "mode": self.mode}  # fmt: skip

    def prepare(self, size_bytes: int) -> NeighborBuffers:
        return NeighborBuffers(self, size_bytes)

    def finish_record(self, fields: dict[str, Any]) -> None:
        add_overlap(fields)


def parser() -> KernelParser:
    """Common flags plus --topology, --algo, --dtype and --mode."""
    ps = common_parser(
        KERNEL,
        "Neighbourhood exchange (one gossip round) per topology: "
        "MPI's neighbourhood collective and point-to-point, over a size sweep.",
    )
    add = ps.add_argument
    add("--topology", default="ring", help=f"comma list of {', '.join(TOPOLOGIES)} "
        "(default ring)")  # fmt: skip
    add("--algo", default="all", help="native (MPI_Neighbor_allgather), p2p (Isend/Irecv), "
        "or all (default)")  # fmt: skip
    add("--dtype", default="uint8", help=f"one of {', '.join(DTYPES)} (default uint8)")
    add("--mode", default="blocking", help="blocking, nonblocking or persistent (native only, "
        "timed in C)")  # fmt: skip
    return ps


def _choices(text: str, known: Sequence[str], what: str) -> list[str]:
    names = list(known) if text.strip() == "all" else [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in known] or ([] if names else ["(none)"])
    if bad:
        raise UsageError(f"unknown {what} {bad[0]!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def cases(comm: MPI.Comm, args: argparse.Namespace, backend: Backend) -> Sequence[Case]:
    """One case per (topology, exchange)."""
    if args.dtype not in DTYPES:
        raise UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    topologies = _choices(args.topology, TOPOLOGIES, "topology")
    algos = _choices(args.algo, EXCHANGES, "algorithm")
    check_mode(args.mode, args, backend)
    if backend.stage_through_host():
        raise UsageError("neighbor: device buffers need a CUDA-aware MPI")
    if args.mode != "blocking":
        if "p2p" in algos and args.algo != "all":
            raise UsageError(f"--mode {args.mode} is for MPI's own call: --algo native")
        algos = ["native"]
    for topology in topologies:
        neighbors(topology, 0, comm.size)  # e.g. a hypercube needs a power of two
    return [NeighborCase(comm, backend, t, a, args.dtype, args.mode)
            for t in topologies for a in algos]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Validate on every rank, sweep, log; the exit status (2 bad input, 1 wrong results)."""
    return run_sweep_kernel(KERNEL, parser(), cases, argv)

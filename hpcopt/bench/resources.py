"""Checks before allocating: the buffers and samples of a sweep must fit in the memory the
node has, or the run is refused with one line naming the need and what is free."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from mpi4py import MPI

from hpcopt.bench.harness import Case, SweepConfig, iterations_for
from hpcopt.errors import UsageError

__all__ = ["available_memory", "check_memory", "check_node_memory", "rank_need"]

HEADROOM = 0.9  # never plan to use more than this share of the available memory
GiB = float(1 << 30)


def available_memory() -> int | None:
    """MemAvailable of this node in bytes (Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def rank_need(plans: Sequence[tuple[Case, Sequence[int]]], cfg: SweepConfig, ranks: int) -> int:
    """The most memory one rank needs at once: the largest case footprint plus its samples
    (rank 0 also gathers every rank's samples)."""
    need = 0
    for case, sizes in plans:
        for size in sizes:
            iters = iterations_for(size, cfg)[1]
            need = max(need, case.footprint(size) + 8 * iters * (1 + ranks))
    return need


def check_memory(
    comm: MPI.Comm, plans: Sequence[tuple[Case, Sequence[int]]], cfg: SweepConfig
) -> None:
    """Collective: UsageError when a node's ranks together need more memory than it has."""
    check_node_memory(comm, rank_need(plans, cfg, comm.size), "the sweep", "use a smaller -e or -n")


def check_node_memory(comm: MPI.Comm, need: int, what: str, hint: str) -> None:
    """Collective: UsageError on every rank of a node whose ranks together need more than
    the node has available (``need`` is this rank's share)."""
    node = cast(MPI.Intracomm, comm).Split_type(MPI.COMM_TYPE_SHARED, comm.rank)
    try:
        total = node.allreduce(need)
        ranks_here = node.size
    finally:
        node.Free()
    free = available_memory()
    if free is not None and total > HEADROOM * free:
        raise UsageError(
            f"{what} needs about {total / GiB:.1f} GiB on this node ({ranks_here} ranks) and "
            f"{free / GiB:.1f} GiB are available; {hint}"
        )

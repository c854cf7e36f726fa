"""A kernel with planted faults, to test how the harness reports them.

``wrong``: an algorithm that corrupts one element (the run must exit 1).
``raise``: rank 1 raises at the second size (the job must abort, keeping the first record).
"""

from __future__ import annotations

import sys

from hpcopt.collectives import register
from hpcopt.collectives.cost import GENERIC
from hpcopt.collectives.ring import ring
from hpcopt.kernels import run


def corrupting_ring(comm, buf, **kwargs) -> int:
    sent = ring(comm, buf, **kwargs)
    if buf.size and comm.rank == comm.size - 1:
        buf[-1] += 1
    return sent


def raising_ring(comm, buf, **kwargs) -> int:
    if comm.rank == 1 and buf.nbytes >= 16:
        raise RuntimeError("planted failure")
    return ring(comm, buf, **kwargs)


if __name__ == "__main__":
    register("corrupting-ring", corrupting_ring, cost=GENERIC)
    register("raising-ring", raising_ring, cost=GENERIC)
    sys.exit(run("allreduce"))

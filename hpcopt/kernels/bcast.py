"""The bcast kernel: MPI's own and the binomial and scatter-allgather algorithms.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import BCAST
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(BCAST)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

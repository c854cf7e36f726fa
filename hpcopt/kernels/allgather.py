"""The allgather kernel: MPI's own and the ring, recursive-doubling and Bruck algorithms.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import ALLGATHER
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(ALLGATHER)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

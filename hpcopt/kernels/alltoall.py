"""The alltoall kernel: MPI's own and the pairwise and Bruck algorithms.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import ALLTOALL
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(ALLTOALL)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

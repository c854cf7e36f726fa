"""The reduce_scatter kernel: MPI's own and the ring, recursive-halving and pairwise algorithms.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import REDUCE_SCATTER
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(REDUCE_SCATTER)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

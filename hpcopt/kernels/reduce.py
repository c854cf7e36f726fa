"""The reduce kernel: MPI's own, in place at the root and out of place.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import REDUCE
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(REDUCE)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

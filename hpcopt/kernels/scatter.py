"""The scatter kernel: MPI's own, in place at the root and out of place.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import SCATTER
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(SCATTER)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

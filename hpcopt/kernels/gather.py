"""The gather kernel: MPI's own, in place at the root and out of place.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import GATHER
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(GATHER)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

"""The barrier kernel: MPI's own.

Flags, cases and the exact check are those of every collective kernel (kernels.collective).
"""

from __future__ import annotations

from hpcopt.collectives import BARRIER
from hpcopt.kernels.collective import CollectiveKernel

__all__ = ["KERNEL", "cases", "main", "parser"]

KERNEL = CollectiveKernel(BARRIER)
parser, cases, main = KERNEL.parser, KERNEL.cases, KERNEL.main

"""The SPMD kernels, one module each (its flags, cases and main); ``kernels/NAME.py`` runs one.

This package imports no NumPy, so that :func:`run` can set the thread counts of the
numerical libraries before they load.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

__all__ = ["KERNELS", "run"]

KERNELS = ("allreduce", "p2p", "compress", "train")


def run(name: str, argv: Sequence[str] | None = None) -> int:
    """Run kernel ``name`` in this process (under mpiexec); returns its exit status."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose from: {', '.join(KERNELS)}")
    # One BLAS/OpenMP thread per rank: the ranks already fill the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    module = importlib.import_module(f"hpcopt.kernels.{name}")
    return int(module.main(argv))

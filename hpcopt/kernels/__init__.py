"""The SPMD kernels, one module each (its flags, cases and main); ``kernels/NAME.py`` runs one.

This package imports neither NumPy nor mpi4py's MPI module, so that :func:`run` can set the
thread counts of the numerical libraries and the MPI thread level before they load.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COLLECTIVE_KERNELS", "KERNELS", "run", "thread_level_from"]

COLLECTIVE_KERNELS = ("allgather", "reduce_scatter", "reduce", "bcast", "alltoall", "gather",
                      "scatter", "barrier")  # fmt: skip
KERNELS = ("allreduce", *COLLECTIVE_KERNELS, "neighbor", "p2p", "compress", "train")
THREAD_LEVELS = ("single", "funneled", "serialized", "multiple")


def thread_level_from(argv: Sequence[str]) -> str | None:
    """The value of ``--thread-level`` in ``argv`` when it is a known level, else None (a
    bad value is then refused by the kernel's parser, once MPI can say so on rank 0)."""
    for i, arg in enumerate(argv):
        if arg == "--thread-level" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--thread-level="):
            value = arg.split("=", 1)[1]
        else:
            continue
        return value if value in THREAD_LEVELS else None
    return None


def run(name: str, argv: Sequence[str] | None = None) -> int:
    """Run kernel ``name`` in this process (under mpiexec); returns its exit status."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose from: {', '.join(KERNELS)}")
    # One BLAS/OpenMP thread per rank: the ranks already fill the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    level = thread_level_from(sys.argv[1:] if argv is None else argv)
    if level is not None:
        if "mpi4py.MPI" in sys.modules:
            raise RuntimeError("--thread-level must be set before mpi4py.MPI is imported")
        import mpi4py

        mpi4py.rc.thread_level = level
    module = importlib.import_module(f"hpcopt.kernels.{name}")
    return int(module.main(argv))

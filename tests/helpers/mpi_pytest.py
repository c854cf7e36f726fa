"""pytest on every rank of an MPI job; only rank 0 prints, the others write to a file.

Run as ``mpiexec -n N python tests/helpers/mpi_pytest.py --with-mpi MODULE``. Ranks
other than 0 send their output to ``$HPCOPT_MPI_REPORT_DIR/rank{N}.txt`` (or nowhere),
so that a failure seen only there can still be shown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mpi4py import MPI


def _quiet(rank: int) -> None:
    report_dir = os.environ.get("HPCOPT_MPI_REPORT_DIR")
    target = Path(report_dir) / f"rank{rank}.txt" if report_dir else Path(os.devnull)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(fd, stream.fileno())
    os.close(fd)


if __name__ == "__main__":
    if MPI.COMM_WORLD.rank:
        _quiet(MPI.COMM_WORLD.rank)
    sys.exit(pytest.main(sys.argv[1:]))

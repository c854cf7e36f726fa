"""Allreduce sweep: every selected algorithm over a size sweep, timed by the shared harness.

Run with ``mpiexec -n N python kernels/allreduce.py [flags]``; ``--help`` lists them.
"""

import os
import sys

# One BLAS thread per rank: the ranks already fill the cores (set before NumPy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hpcopt.cases.kernels import allreduce_cases, allreduce_parser
from hpcopt.spmd import run_kernel

if __name__ == "__main__":
    sys.exit(run_kernel("allreduce", allreduce_parser(__doc__), allreduce_cases))

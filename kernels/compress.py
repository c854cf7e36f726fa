"""Encoder throughput on one rank: encode and decode GB/s, payload bytes, ratio, error.

Run with ``python kernels/compress.py [flags]`` (or ``mpiexec -n 1``); ``--help`` lists them.
"""

import os
import sys

# One BLAS thread per rank: the ranks already fill the cores (set before NumPy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hpcopt.cases.kernels import compress_cases, compress_parser
from hpcopt.spmd import run_kernel

if __name__ == "__main__":
    sys.exit(run_kernel("compress", compress_parser(__doc__), compress_cases))

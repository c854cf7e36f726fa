"""Two-rank point-to-point: ping-pong latency and windowed streaming bandwidth.

Run with ``mpiexec -n 2 python kernels/p2p.py [flags]``; ``--help`` lists them.
"""

import os
import sys

# One BLAS thread per rank: the ranks already fill the cores (set before NumPy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hpcopt.cases.kernels import p2p_cases, p2p_parser
from hpcopt.spmd import run_kernel

if __name__ == "__main__":
    sys.exit(run_kernel("p2p", p2p_parser(__doc__), p2p_cases))

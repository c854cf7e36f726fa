"""The alltoall sweep: MPI's own and the pairwise and Bruck algorithms.

Run with ``mpiexec -n N python kernels/alltoall.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("alltoall"))

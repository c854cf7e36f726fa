"""The allgather sweep: MPI's own and the ring, recursive-doubling and Bruck algorithms.

Run with ``mpiexec -n N python kernels/allgather.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("allgather"))

"""The reduce_scatter sweep: MPI's own and the ring, recursive-halving and pairwise algorithms.

Run with ``mpiexec -n N python kernels/reduce_scatter.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("reduce_scatter"))

"""The bcast sweep: MPI's own and the binomial and scatter-allgather algorithms.

Run with ``mpiexec -n N python kernels/bcast.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("bcast"))

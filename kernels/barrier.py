"""The barrier sweep: MPI's own.

Run with ``mpiexec -n N python kernels/barrier.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("barrier"))

"""The reduce sweep: MPI's own, in place at the root and out of place.

Run with ``mpiexec -n N python kernels/reduce.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("reduce"))

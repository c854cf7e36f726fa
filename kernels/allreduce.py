"""Allreduce sweep: every selected algorithm over a size sweep, timed by the shared harness.

Run with ``mpiexec -n N python kernels/allreduce.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("allreduce"))

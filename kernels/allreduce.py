"""Allreduce sweep: every selected algorithm over a size sweep, timed by the shared harness.

Run with ``mpiexec -n N python kernels/allreduce.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.cases.kernels import allreduce_cases, allreduce_parser
from hpcopt.spmd import run_kernel

if __name__ == "__main__":
    sys.exit(run_kernel("allreduce", allreduce_parser(__doc__), allreduce_cases))

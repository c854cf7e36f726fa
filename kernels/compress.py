"""Encoder throughput on one rank: encode and decode GB/s, payload bytes, ratio, error.

Run with ``python kernels/compress.py [flags]`` (or ``mpiexec -n 1``); ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("compress"))

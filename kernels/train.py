"""Distributed training to ε: bits-to-ε and time-to-ε of sync, local, dsgd, choco, easgd.

Run with ``mpiexec -n N python kernels/train.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("train"))

"""Distributed training to ε: bits-to-ε and time-to-ε of sync, local, dsgd, choco, easgd.

Run with ``mpiexec -n N python kernels/train.py [flags]``; ``--help`` lists them.
"""

import os
import sys

# One BLAS thread per rank: the ranks already fill the cores (set before NumPy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hpcopt.optim.kernel import main

if __name__ == "__main__":
    sys.exit(main())

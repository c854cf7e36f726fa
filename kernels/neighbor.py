"""The neighbor sweep: one gossip round per topology, as MPI's neighbourhood collective and
as point-to-point exchanges.

Run with ``mpiexec -n N python kernels/neighbor.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("neighbor"))

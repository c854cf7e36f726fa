"""Two-rank point-to-point: ping-pong latency and windowed streaming bandwidth.

Run with ``mpiexec -n 2 python kernels/p2p.py [flags]``; ``--help`` lists them.
"""

import sys

from hpcopt.kernels import run

if __name__ == "__main__":
    sys.exit(run("p2p"))

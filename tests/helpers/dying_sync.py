"""A plugin optimizer for fault-tolerance tests: sync SGD whose rank ``victim`` (of the
original job) kills itself with SIGKILL at iteration ``at``.

Load it with ``HPCOPT_PLUGINS=dying_sync`` and tests/helpers on PYTHONPATH.
"""

from __future__ import annotations

import os
import signal

from mpi4py import MPI

from hpcopt.optim import register
from hpcopt.optim.sync import SyncSGD


class DyingSync(SyncSGD):
    """Sync SGD that loses one rank to a signal mid-training."""

    name = "dying-sync"

    def __init__(self, comm, problem, cfg, *, victim: int = 1, at: int = 5) -> None:
        super().__init__(comm, problem, cfg)
        self.victim, self.at = victim, at

    def step(self, it: int) -> None:
        if it == self.at and MPI.COMM_WORLD.rank == self.victim:
            os.kill(os.getpid(), signal.SIGKILL)
        super().step(it)


register(DyingSync.name, DyingSync)

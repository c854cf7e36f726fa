"""What keeps a long run from hanging or losing work: a watchdog per (case, size) and
SIGTERM/SIGINT handling that stops the sweep at the next record boundary, on every rank.

The watchdog is a thread on every rank. Before each (case, size) every rank writes the step
number into a small RMA window on rank 0; when the step outlasts its time limit, rank 0
names the ranks that had not reached it, and the job is aborted (the records completed so
far are already on disk, in the ``.partial`` log).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import cast

import numpy as np
from mpi4py import MPI

__all__ = ["DEFAULT_TIMEOUT_S", "Interrupted", "SweepGuard"]

DEFAULT_TIMEOUT_S = 900.0
ABORT_STATUS = 3  # the exit status of a job the watchdog ended
OTHERS_GRACE_S = 5.0  # non-root ranks let rank 0 speak first
# Time for the launcher to forward a rank's last line before MPI_Abort tears the job down: without
# it, the line was lost in about 1 of 10 aborts on a loaded machine (hydra's proxy exits first).
ABORT_GRACE_S = 0.5


class Interrupted(Exception):
    """The run was asked to stop (SIGTERM, SIGINT) and stopped at a record boundary."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def status(self) -> int:
        """The conventional exit status: 128 + the signal number."""
        return 128 + self.signum


class SweepGuard:
    """Watchdog and stop flag for one kernel run on ``comm`` (collective to create)."""

    def __init__(self, comm: MPI.Comm, kernel: str, timeout_s: float) -> None:
        self.comm, self.kernel, self.timeout_s = comm, kernel, timeout_s
        self.signum = 0
        self._previous: dict[int, object] = {}
        self._progress = cast(MPI.Intracomm, comm).Dup()
        size = 8 * comm.size if comm.rank == 0 else 0
        self._win = MPI.Win.Allocate(size, disp_unit=8, comm=self._progress)
        self._arrived = (
            np.frombuffer(self._win.tomemory(), dtype=np.int64)  # type: ignore[call-overload]
            if comm.rank == 0
            else None
        )
        if self._arrived is not None:
            self._arrived[:] = -1
        self._step = np.zeros(1, dtype=np.int64)
        self._armed: tuple[int, str, float] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        if timeout_s > 0:
            self._thread = threading.Thread(target=self._watch, name="hpcopt-watchdog", daemon=True)
            self._thread.start()

    # -- signals ---------------------------------------------------------------------------

    def catch_signals(self) -> None:
        """SIGTERM and SIGINT set a flag that :meth:`stop_requested` turns into a clean stop."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum

    def stop_requested(self) -> None:
        """Collective: raise :class:`Interrupted` on every rank when any rank was signalled."""
        asked = self.comm.allreduce(self.signum, op=MPI.MAX)
        if asked:
            raise Interrupted(asked)

    # -- watchdog --------------------------------------------------------------------------

    def arm(self, step: int, what: str) -> None:
        """Announce step ``step`` (one case at one size, described by ``what``)."""
        self._step[0] = step
        self._win.Lock(0, MPI.LOCK_SHARED)
        self._win.Put(self._step, 0, target=self._progress.rank)
        self._win.Unlock(0)
        with self._wake:
            self._armed = (step, what, time.monotonic() + self.timeout_s)
            self._wake.notify()

    def disarm(self) -> None:
        """The step finished on this rank."""
        with self._wake:
            self._armed = None
            self._wake.notify()

    def _watch(self) -> None:
        with self._wake:
            while not self._closed:
                if self._armed is None:
                    self._wake.wait()
                    continue
                step, what, deadline = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._expire(step, what)

    def _expire(self, step: int, what: str) -> None:
        """Say who is missing (rank 0) and end the job; records on disk stay."""
        rank = self.comm.rank
        if self._arrived is not None:
            late = [r for r, seen in enumerate(self._arrived) if seen < step]
            who = f"ranks that had not arrived: {late}" if late else "every rank had arrived"
        else:
            self._wake.wait(OTHERS_GRACE_S)
            who = f"reported by rank {rank}"
        print(
            f"{self.kernel}: error: no progress for {self.timeout_s:g} s in {what}; {who}; "
            "aborting (completed records are in the .partial log)",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(ABORT_GRACE_S)
        if MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self.comm.Abort(ABORT_STATUS)
        os._exit(ABORT_STATUS)

    def close(self) -> None:
        """Stop the watchdog, restore the signal handlers, free the window (collective)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._arrived = None
        self._win.Free()
        self._progress.Free()

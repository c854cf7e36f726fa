"""Asynchronous SGD over one-sided MPI: server ranks hold the model in an RMA window; workers
``Get`` it and ``Accumulate`` their update without waiting for each other.

Ranks 0..servers−1 serve (each holds a contiguous slice of the float32 model; rank 0 also
a header: version, stop flag, dropped updates), the others work, each on its own data
shard. A worker repeats: read the model under shared locks (passive target), compute
u = −(lr(v)/W)·g at the version v it read (W workers: W updates move as far as one
synchronous step of the mean gradient), then under an exclusive lock of rank 0's window read
the version again and apply u with ``MPI_Accumulate`` (SUM), version += 1. The staleness of
the update is the number of updates applied between its read and its apply; with
``staleness=S`` an update staler than S is dropped (the worker reads again). Exclusive
applies and shared reads make every read a consistent model.

Rank 0 also measures: it evaluates f on snapshots of the model every ``--eval-every``
applied updates (on all shards, without stopping the workers), stops the run through the
header flag, and timestamps each snapshot; time to ε is its clock. One iteration is one
applied update (one worker's gradient). Passive-target operations may need the target to
make MPI progress: ``progress=thread`` runs a thread on the servers that polls MPI while
rank 0 evaluates; ``MPICH_ASYNC_PROGRESS=1`` in the environment has MPICH do it.

Bytes counted per attempt (worker): the model read (4d) and header (24) with ``MPI_Get``,
the header again under the exclusive lock (24), then the update (4d) and the version
increment (8) with ``MPI_Accumulate`` when applied, or the dropped count (8) when not.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, cast

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan, plan
from hpcopt.errors import UsageError
from hpcopt.optim.base import OPTIMIZERS, PHASES, Config, Optimizer
from hpcopt.problems import Problem
from hpcopt.specs import choice, positive_int

__all__ = ["AsyncSGD", "progress_mode"]

HEADER = 32  # bytes: version, stop, dropped (int64 each), padding
VERSION, STOP, DROPPED = 0, 1, 2
POLL_S = 1e-3  # rank 0 looks at the version this often between evaluations
THREAD_POLL_S = 50e-6  # the progress thread's pause between MPI polls
PROGRESS = ("none", "thread")


def _staleness(text: str) -> int:
    """An integer >= 0, or none (no bound: -1)."""
    if text.strip().lower() in ("none", "inf"):
        return -1
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("an integer >= 0 or none")
    return value


def progress_mode(option: str) -> str:
    """How passive-target progress was made: thread, mpich-async (the environment), none."""
    if option == "thread":
        return "thread"
    for name in ("MPICH_ASYNC_PROGRESS", "MPIR_CVAR_ASYNC_PROGRESS"):
        if os.environ.get(name, "0").strip() not in ("", "0"):
            return "mpich-async"
    return "none"


class AsyncSGD(Optimizer):
    """Asynchronous (parameter-server) SGD with an optional staleness bound."""

    name = "async"
    drives_itself = True

    def __init__(
        self, comm: MPI.Comm, problem: Problem, cfg: Config, *, staleness: int = -1,
        servers: int = 1, progress: str = "none",
    ) -> None:  # fmt: skip
        super().__init__(comm, problem, cfg)
        self.bound, self.servers, self.progress = staleness, servers, progress
        self.workers = comm.size - servers
        d = self.x.size
        self.bounds = [s * d // servers for s in range(servers + 1)]
        mine = self.bounds[comm.rank + 1] - self.bounds[comm.rank] if self.serving else 0
        nbytes = HEADER + 4 * mine if self.serving else 0
        self.win = MPI.Win.Allocate(nbytes, 1, comm=cast(MPI.Intracomm, comm))
        self.hist = np.zeros(1, dtype=np.int64)
        self.dropped = 0
        self.header = np.zeros(3, dtype=np.int64)
        self.model32 = np.zeros(d, dtype=np.float32)
        if self.serving:
            memory = np.frombuffer(cast(Any, self.win.tomemory()), dtype=np.uint8)
            self.local_header = memory[:24].view(np.int64)
            self.local_model = memory[HEADER:].view(np.float32)
            lo, hi = self.bounds[comm.rank], self.bounds[comm.rank + 1]
            self.local_header[:] = 0
            self.local_model[:] = self.x[lo:hi]
        comm.Barrier()

    @property
    def serving(self) -> bool:
        return self.comm.rank < self.servers

    @classmethod
    def aggregation(cls, cfg: Config) -> Plan:
        if cfg.encoder.strip() != "none" or cfg.ef or cfg.method not in ("auto", "summable"):
            raise UsageError("async accumulates float32 updates with MPI_Accumulate: "
                             "--encoder, --ef and --method do not apply")  # fmt: skip
        return plan("none", algorithm=cfg.allreduce)

    @classmethod
    def check(cls, cfg: Config, ranks: int, **options: Any) -> None:
        super().check(cfg, ranks)
        servers = options.get("servers", 1)
        if ranks < servers + 1:
            raise UsageError(f"async needs {servers} server rank(s) and at least one worker: "
                             f"{servers + 1} ranks or more, not {ranks}")  # fmt: skip
        if options.get("progress") == "thread" and MPI.Query_thread() != MPI.THREAD_MULTIPLE:
            raise UsageError("async progress=thread needs MPI_THREAD_MULTIPLE")
        if 0 <= cfg.slow_rank < servers:
            raise UsageError(f"--straggler {cfg.slow_rank}: ranks below {servers} serve and "
                             "compute nothing; name a worker")  # fmt: skip

    @classmethod
    def data_ranks(cls, ranks: int, **options: Any) -> int:
        return ranks - options.get("servers", 1)

    # ---- one-sided access -------------------------------------------------------------

    def _read(self) -> None:
        """Header and whole model into self.header / self.model32 (shared locks)."""
        for s in range(self.servers):
            self.win.Lock(s, MPI.LOCK_SHARED)
        self.win.Get([self.header, MPI.INT64_T], 0, (0, 3, MPI.INT64_T))
        for s in range(self.servers):
            lo, hi = self.bounds[s], self.bounds[s + 1]
            self.win.Get([self.model32[lo:hi], MPI.FLOAT], s, (HEADER, hi - lo, MPI.FLOAT))
        for s in range(self.servers):
            self.win.Unlock(s)

    def _apply(self, update: np.ndarray, read: int, budget: int) -> int | None:
        """Apply ``update`` read at version ``read`` unless stopped, over budget or too stale;
        its staleness when applied, else None; bytes to the ledger."""
        win, nbytes = self.win, 24
        win.Lock(0, MPI.LOCK_EXCLUSIVE)
        now = np.zeros(3, dtype=np.int64)
        win.Get([now, MPI.INT64_T], 0, (0, 3, MPI.INT64_T))
        win.Flush(0)
        tau = int(now[VERSION]) - read
        if now[STOP] or now[VERSION] >= budget:
            win.Unlock(0)
            self.header[STOP] = 1
            self.ledger.add(nbytes, {}, messages=0)
            return None
        if 0 <= self.bound < tau:
            win.Accumulate([np.array([1], np.int64), MPI.INT64_T], 0, (8 * DROPPED, 1, MPI.INT64_T))
            win.Unlock(0)
            self.ledger.add(nbytes + 8, {}, messages=0)
            return None
        for s in range(1, self.servers):
            win.Lock(s, MPI.LOCK_EXCLUSIVE)
        for s in range(self.servers):
            lo, hi = self.bounds[s], self.bounds[s + 1]
            win.Accumulate([update[lo:hi], MPI.FLOAT], s, (HEADER, hi - lo, MPI.FLOAT), MPI.SUM)
        win.Accumulate([np.array([1], np.int64), MPI.INT64_T], 0, (0, 1, MPI.INT64_T))
        for s in range(self.servers):
            win.Unlock(s)
        self.ledger.add(nbytes + 8 + update.nbytes, {}, messages=1)
        return tau

    # ---- the two roles -----------------------------------------------------------------

    def _work(self, budget: int) -> None:
        """A worker's loop: read, compute, apply, until the stop flag or the budget."""
        while True:
            with self.ledger.phase("communicate"):
                self._read()
            self.ledger.add(24 + self.model32.nbytes, {}, messages=1)
            if self.header[STOP] or self.header[VERSION] >= budget:
                return
            read = int(self.header[VERSION])
            g = self.gradient(self.model32.astype(np.float64))
            with self.ledger.phase("compute"):
                update = (-self.lr(read) / self.workers * g).astype(np.float32)
            with self.ledger.phase("communicate"):
                tau = self._apply(update, read, budget)
            if tau is None and self.header[STOP]:
                return
            if tau is None:
                self.dropped += 1
                continue
            if tau >= self.hist.size:
                self.hist = np.concatenate(
                    [self.hist, np.zeros(tau + 1 - self.hist.size, np.int64)]
                )
            self.hist[tau] += 1

    def _snapshot(self) -> tuple[int, int, np.ndarray]:
        """Rank 0: (version, dropped, model) read consistently (a shared lock on every server)."""
        for s in range(self.servers):
            self.win.Lock(s, MPI.LOCK_SHARED)
        self.win.Sync()
        version, dropped = int(self.local_header[VERSION]), int(self.local_header[DROPPED])
        model = np.empty(self.x.size, dtype=np.float32)
        model[: self.bounds[1]] = self.local_model
        for s in range(1, self.servers):
            lo, hi = self.bounds[s], self.bounds[s + 1]
            self.win.Get([model[lo:hi], MPI.FLOAT], s, (HEADER, hi - lo, MPI.FLOAT))
        for s in range(self.servers):
            self.win.Unlock(s)
        return version, dropped, model

    def _row(
        self, version: int, dropped: int, model: np.ndarray, wall: float, f_star: Any
    ) -> list[float]:
        """A measurement row as the synchronous loop makes them (phases are run totals, so
        NaN until the end)."""
        d, p = self.x.size, self.comm.size
        obj = float(self.problem.full_loss(model.astype(np.float64)))
        attempts = version + dropped
        sent = attempts * (24 + 4 * d + 24) + version * (8 + 4 * d) + dropped * 8
        subopt = obj - f_star if f_star is not None else obj
        nan = float("nan")
        return [obj, subopt, 0.0, 8.0 * sent / p, (attempts + version) / p, wall, *[nan] * 4]

    def _measure(self, track: Any, stop: bool) -> None:
        """Rank 0's loop: evaluate snapshots every eval_every updates, stop the run."""
        t0, due = MPI.Wtime(), track.eval_every
        while not stop:
            version, dropped, model = self._snapshot()
            if version < due and version < track.max_iters:
                time.sleep(POLL_S)
                continue
            due = (version // track.eval_every + 1) * track.eval_every
            row = self._row(version, dropped, model, MPI.Wtime() - t0, track.f_star)
            stop = track.add(version, row)
        self.win.Lock(0, MPI.LOCK_EXCLUSIVE)
        self.local_header[STOP] = 1
        self.win.Unlock(0)

    def _poll_progress(self, done: threading.Event) -> None:
        """The progress thread: an MPI call every THREAD_POLL_S until ``done``."""
        while not done.is_set():
            self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG)
            time.sleep(THREAD_POLL_S)

    def drive(self, track: Any) -> None:
        """Serve, measure (rank 0) or work until the run stops; then agree on the result."""
        done, thread = threading.Event(), None
        if self.serving and self.progress == "thread":
            thread = threading.Thread(target=self._poll_progress, args=(done,), daemon=True)
            thread.start()
        stop = False
        if self.comm.rank == 0:
            version, dropped, model = self._snapshot()
            stop = track.add(0, self._row(version, dropped, model, 0.0, track.f_star))
        self.comm.Barrier()
        t_start = MPI.Wtime()
        if self.comm.rank == 0:
            self._measure(track, stop)
        elif not self.serving:
            self._work(track.max_iters)
        self.comm.Barrier()
        wall = MPI.Wtime() - t_start
        done.set()
        if thread is not None:
            thread.join()
        self._finish(track, wall)

    def _finish(self, track: Any, wall: float) -> None:
        """Every rank: the rows and final model of rank 0; phase totals in the last row."""
        track.rows = self.comm.bcast(track.rows, root=0)
        if self.comm.rank == 0:
            self.model32[:] = self._snapshot()[2]
        self.comm.Bcast(self.model32, root=0)
        self.x = self.model32.astype(np.float64)
        times = np.array([wall, *(self.ledger.t[k] for k in PHASES)])
        self.comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
        track.rows[-1][7:] = times[1:].tolist()
        self.win.Free()

    def summary(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        size = self.comm.allreduce(self.hist.size, op=MPI.MAX)
        hist = np.zeros(size, dtype=np.int64)
        hist[: self.hist.size] = self.hist
        self.comm.Allreduce(MPI.IN_PLACE, hist)
        applied = int(hist.sum())
        taus = np.arange(size)
        fields = {
            "applied_updates": applied,
            "dropped_updates": self.comm.allreduce(self.dropped, op=MPI.SUM),
            "staleness_max": int(taus[hist > 0].max()) if applied else 0,
            "staleness_mean": float(taus @ hist) / applied if applied else 0.0,
            "progress": progress_mode(self.progress),
        }
        return fields, {"staleness_hist": hist}


OPTIMIZERS.register(
    AsyncSGD.name,
    AsyncSGD,
    parsers={"staleness": _staleness, "servers": positive_int, "progress": choice(*PROGRESS)},
)

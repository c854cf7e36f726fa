"""Surviving a lost rank with ULFM (MPI_Comm_revoke, MPI_Comm_shrink, MPI_Comm_agree).

:class:`Survivor` wraps an optimizer whose ranks all hold the same model. Each step ends
with MPI_Comm_agree over "did my step succeed", so every survivor learns of a failure at
the same step. Then they revoke the communicator, shrink it to the survivors, put the
model (and the error-feedback residual) back as it was before the step, and run the step
again on the survivors. The lost ranks' data shards are regenerated, as data reloaded from
storage, by the survivors that hold the fewest shards; every survivor's loss is weighted
by survivors/ranks, so the objective and f* stay those of the whole data set.

:func:`ulfm_problem` says why a job cannot do this (one line naming the MPI library).
Known (docs/fault_tolerance.md): Open MPI 5 started with ``mpirun --with-ft ulfm`` works;
the MPICH 5.0.2 wheel asserts inside MPI_Init once MPIR_CVAR_ENABLE_FT=1.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
from mpi4py import MPI

__all__ = ["FAILURES", "SharedShards", "Survivor", "exit_without_finalize", "ulfm_problem"]

FAILURES = frozenset({MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED})
_ON = ("1", "true", "yes", "on", "enabled")


def ulfm_problem(library: str | None = None, env: dict[str, str] | None = None) -> str | None:
    """Why this job cannot survive a lost rank, or None when it can."""
    text = library if library is not None else MPI.Get_library_version()
    name = " ".join(text.strip().splitlines()[0].split()) if text.strip() else "this MPI library"
    env = dict(os.environ) if env is None else env
    works = "it works under Open MPI 5 started with mpirun --with-ft ulfm"
    if "Open MPI" in name:
        version = re.search(r"v(\d+)\.", name)
        if version is None or int(version.group(1)) < 5:
            return f"--tolerate-failures: {name} has no ULFM built in; {works}"
        if env.get("OMPI_MCA_mpi_ft_enable", "").lower() not in _ON:
            return (f"--tolerate-failures: {name} has ULFM, but this job was started without "
                    "it: use mpirun --with-ft ulfm")  # fmt: skip
        return None
    if "MPICH" in name:
        return (f"--tolerate-failures: {name} has no working ULFM (MPI_Init asserts in "
                f"ch4_request.h with MPIR_CVAR_ENABLE_FT=1); {works}")  # fmt: skip
    return f"--tolerate-failures: ULFM is not known to work with {name}; {works}"


def exit_without_finalize(comm: MPI.Comm, status: int) -> NoReturn:
    """End a survivor once every survivor got here, without MPI_Finalize.

    After a rank was lost, Open MPI 5.0.11's MPI_Finalize waited forever in 3 of 10 runs (its
    PMIx fence still counts the lost rank; open-mpi/ompi issue 11404); without it, mpirun
    --with-ft ulfm ends every run with status 0.
    """
    comm.Barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class SharedShards:
    """The shards one survivor holds, weighted so that the survivors' mean loss is f.

    Every other attribute is the first (own) shard's problem's.
    """

    def __init__(self, problems: list[Any], weight: float) -> None:
        self.problems, self.weight = problems, weight

    def __getattr__(self, name: str) -> Any:
        return getattr(self.problems[0], name)

    def _batches(self, batch: Any) -> list[Any]:
        return list(batch) if batch is not None else [None] * len(self.problems)

    def sample_batch(self, rng: np.random.Generator, size: int) -> tuple[Any, ...]:
        """A minibatch from each shard."""
        return tuple(p.sample_batch(rng, size) for p in self.problems)

    def loss_local(self, x: Any, batch: Any = None) -> float:
        return self.weight * sum(
            p.loss_local(x, b) for p, b in zip(self.problems, self._batches(batch), strict=True)
        )

    def grad_local(self, x: Any, batch: Any = None) -> Any:
        return self.loss_grad_local(x, batch)[1]

    def loss_grad_local(self, x: Any, batch: Any = None) -> tuple[float, Any]:
        loss, grad = 0.0, 0.0
        for p, b in zip(self.problems, self._batches(batch), strict=True):
            value, g = p.loss_grad_local(x, b)
            loss, grad = loss + value, grad + g
        return self.weight * loss, self.weight * grad


class Survivor:
    """An optimizer that survives lost ranks; everything else is the wrapped optimizer's.

    ``shard_problem(i)`` builds original rank i's problem (its data shard).
    """

    def __init__(self, opt: Any, shard_problem: Callable[[int], Any]) -> None:
        self.opt = opt
        self.world = opt.comm.size
        self.members = list(range(self.world))  # original rank of each current rank
        self.owner = {i: i for i in range(self.world)}  # shard -> original rank holding it
        self.problems = {opt.comm.rank: opt.problem}
        self.shard_problem = shard_problem
        self.events: list[dict[str, Any]] = []
        opt.comm = opt.comm.Dup()  # a communicator of our own to revoke

    def __getattr__(self, name: str) -> Any:
        return getattr(self.opt, name)

    @property
    def comm(self) -> MPI.Comm:
        return self.opt.comm

    def step(self, it: int) -> None:
        """One step, run again on the survivors until every one of them finished it."""
        saved = self._snapshot()
        while True:
            ok = 1
            try:
                self.opt.step(it)
            except MPI.Exception as exc:
                if exc.Get_error_class() not in FAILURES:
                    raise
                self.comm.Revoke()  # free the ranks still waiting inside the step
                ok = 0
            try:
                ok = self.comm.Agree(ok)
            except MPI.Exception as exc:
                if exc.Get_error_class() not in FAILURES:
                    raise
                ok = 0
            if ok:
                return
            self._restore(saved)
            self._shrink(it)

    def _snapshot(self) -> tuple[np.ndarray, Any]:
        residual = getattr(self.opt.codec, "residual", None)
        return self.opt.x.copy(), None if residual is None else residual.copy()

    def _restore(self, saved: tuple[np.ndarray, Any]) -> None:
        x, residual = saved
        self.opt.x[...] = x
        if residual is not None:
            self.opt.codec.residual[...] = residual

    def _shrink(self, it: int) -> None:
        """Survivors only: shrink, hand the lost shards out, weight the losses."""
        t0 = MPI.Wtime()
        old = self.comm
        old.Revoke()
        new = old.Shrink()
        kept = MPI.Group.Translate_ranks(new.Get_group(), list(range(new.size)), old.Get_group())
        members = [self.members[r] for r in kept]
        lost = sorted(set(self.members) - set(members))
        for shard in sorted(s for s, o in self.owner.items() if o not in members):
            held = {m: sum(o == m for o in self.owner.values()) for m in members}
            self.owner[shard] = min(members, key=lambda m: (held[m], members.index(m)))
        me = members[new.rank]
        mine = sorted(s for s, o in self.owner.items() if o == me)
        for shard in mine:
            if shard not in self.problems:
                self.problems[shard] = self.shard_problem(shard)
        own = [self.problems[me], *(self.problems[s] for s in mine if s != me)]
        self.opt.problem = SharedShards(own, new.size / self.world)
        self.opt.comm, self.opt.scratch, self.members = new, {}, members
        self.events.append({"iter": it, "lost": lost, "ranks": new.size,
                            "recovery_s": MPI.Wtime() - t0})  # fmt: skip

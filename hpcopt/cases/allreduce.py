"""Allreduce cases: one registered algorithm, one dtype and op, on one backend."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Backend, Scratch, aligned_full, sync, to_host
from hpcopt.collectives import BoundAlgorithm
from hpcopt.collectives._p2p import mpi_spec, op_name

__all__ = ["DTYPES", "AllreduceCase", "count_mismatches", "fill_check_data"]

DTYPES = ("float32", "float64", "int32", "int64")
_CHUNK = 1 << 22


def fill_check_data(buf: Any, rank: int, seed: int = 0) -> None:
    """Deterministic per-rank values in [-8, 8) on a 1/8 grid: sums are exact in any order."""
    xp_is_numpy = isinstance(buf, np.ndarray)
    for lo in range(0, buf.size, _CHUNK):
        hi = min(lo + _CHUNK, buf.size)
        rng = np.random.default_rng([seed, rank, buf.size, lo])
        ints = rng.integers(-64, 64, hi - lo)
        vals = (ints / 8 if buf.dtype.kind == "f" else ints).astype(buf.dtype)
        if xp_is_numpy:
            buf[lo:hi] = vals
        else:
            buf[lo:hi].set(vals)


def count_mismatches(got: Any, want: Any) -> int:
    """Elements that differ (NaN never equals), counted in chunks to bound memory."""
    wrong = 0
    for lo in range(0, got.size, _CHUNK):
        hi = min(lo + _CHUNK, got.size)
        wrong += int((got[lo:hi] != want[lo:hi]).sum())
    return wrong


def _direct_call(case: AllreduceCase, buf: Any, out: Any) -> Any:
    """MPI's own Allreduce timed as the bare mpi4py call (what a C loop times), else None."""
    if case.backend.on_gpu:
        return None
    comm, op = case.comm, case.op
    if case.algo_.name == "native":
        return functools.partial(comm.Allreduce, MPI.IN_PLACE, mpi_spec(buf), op)
    if case.algo_.name == "native-oop":
        return functools.partial(comm.Allreduce, mpi_spec(buf), mpi_spec(out), op)
    return None


def _call(case: AllreduceCase, scratch: Scratch, buf: Any, out: Any) -> int:
    """One call of the case's algorithm (a plain function: bound, it would not hold a cycle)."""
    algo = case.algo_
    if algo.out_of_place:
        return algo.run(case.comm, buf, op=case.op, scratch=scratch, out=out)
    return algo.run(case.comm, buf, op=case.op, scratch=scratch)


class _Buffers:
    """One size's buffers for an allreduce case; everything allocated here, once."""

    def __init__(self, case: AllreduceCase, size_bytes: int) -> None:
        xp, dtype = case.backend.xp, np.dtype(case.dtype)
        self.case = case
        self.count = size_bytes // dtype.itemsize
        self.size_bytes = self.count * dtype.itemsize
        self.buf = aligned_full(xp, self.count, 1, dtype)
        self.out = aligned_full(xp, self.count, 0, dtype) if case.algo_.out_of_place else None
        self.staged = case.backend.stage_through_host()
        self.host = np.empty(self.count, dtype) if self.staged else None
        self.host_out = np.empty_like(self.host) if self.staged and self.out is not None else None
        self.scratch = Scratch(np if self.staged else xp)
        self.host_only = not case.backend.on_gpu
        if not self.staged:  # the timed call itself, with every argument bound once
            self.run = functools.partial(_call, case, self.scratch, self.buf, self.out)
            self.timed = _direct_call(case, self.buf, self.out) or self.run

    def _call(self, buf: Any, out: Any) -> int:
        return _call(self.case, self.scratch, buf, out)

    def run(self) -> int:
        self.buf.get(out=self.host)
        sent = self._call(self.host, self.host_out)
        target = self.out if self.out is not None else self.buf
        target.set(self.host_out if self.host_out is not None else self.host)
        return sent

    def sync(self) -> None:
        sync(self.buf)

    def result(self) -> Any:
        return self.out if self.out is not None else self.buf

    def check(self) -> dict[str, Any]:
        comm, xp = self.case.comm, self.case.backend.xp
        fill_check_data(self.buf, comm.rank)
        reference = xp.empty_like(self.buf)
        sync(self.buf)
        if self.staged:
            host_ref = np.empty_like(self.host)
            comm.Allreduce(to_host(self.buf), host_ref, self.case.op)
            reference = host_ref
        else:
            comm.Allreduce(self.buf, reference, self.case.op)
        self.run()
        self.sync()
        got = to_host(self.result()) if self.staged else self.result()
        return {"wrong": count_mismatches(got, reference)}


class AllreduceCase:
    """An allreduce algorithm timed by the harness; busbw factor 2(p-1)/p."""

    kernel = "allreduce"
    encoder = "none"

    def __init__(
        self,
        comm: MPI.Comm,
        algo: BoundAlgorithm,
        dtype: str,
        backend: Backend,
        op: MPI.Op = MPI.SUM,
    ) -> None:
        self.comm, self.algo_, self.dtype, self.backend, self.op = comm, algo, dtype, backend, op
        self.algo = algo.label
        self.itemsize = np.dtype(dtype).itemsize
        self.record_fields = {"op": op_name(op), "device": backend.device}

    def bus_factor(self, ranks: int) -> float:
        return 2 * (ranks - 1) / ranks

    def prepare(self, size_bytes: int) -> _Buffers:
        return _Buffers(self, size_bytes)

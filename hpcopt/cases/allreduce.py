"""Allreduce cases: one registered algorithm, one dtype and op, on one backend."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Backend, Scratch, aligned_full, sync, to_host
from hpcopt.collectives import BoundAlgorithm
from hpcopt.collectives._p2p import op_name

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


def _staged(buf: Any, host: Any, call: Any, target: Any, result: Any) -> int:
    """Device buffer to host, the allreduce there, the host result back to ``target``."""
    buf.get(out=host)
    sent = call()
    target.set(result)
    return sent


class _Buffers:
    """One size's buffers for an allreduce case; everything allocated here, once."""

    def __init__(self, case: AllreduceCase, size_bytes: int) -> None:
        xp, dtype = case.backend.xp, np.dtype(case.dtype)
        algo = case.algo_
        self.case = case
        self.count = size_bytes // dtype.itemsize
        self.size_bytes = self.count * dtype.itemsize
        self.buf = aligned_full(xp, self.count, 1, dtype)
        self.out = aligned_full(xp, self.count, 0, dtype) if algo.out_of_place else None
        self.staged = case.backend.stage_through_host()
        self.host_only = not case.backend.on_gpu
        if self.staged:  # MPI sees host copies; the call stages in and out around them
            self.host = np.empty(self.count, dtype)
            self.host_out = np.empty_like(self.host) if self.out is not None else None
            self.scratch = Scratch(np)
            call = algo.call(case.comm, self.host, op=case.op, scratch=self.scratch,
                             out=self.host_out)  # fmt: skip
            result = self.host_out if self.host_out is not None else self.host
            self.run = functools.partial(_staged, self.buf, self.host, call, self.result(), result)
        else:
            self.scratch = Scratch(xp)
            bound = {"op": case.op, "scratch": self.scratch, "out": self.out}
            self.run = algo.call(case.comm, self.buf, **bound)
            self.timed = algo.bind(case.comm, self.buf, **bound)

    def sync(self) -> None:
        sync(self.buf)

    def result(self) -> Any:
        return self.out if self.out is not None else self.buf

    def check(self) -> dict[str, Any]:
        comm, xp = self.case.comm, self.case.backend.xp
        fill_check_data(self.buf, comm.rank)
        sync(self.buf)
        if self.staged:
            reference = np.empty_like(self.host)
            comm.Allreduce(to_host(self.buf), reference, self.case.op)
        else:
            reference = xp.empty_like(self.buf)
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

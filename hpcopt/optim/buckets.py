"""Gradient buckets as in PyTorch DDP: the gradient arrives tensor by tensor (last layer
first); each bucket that fills starts a non-blocking ``MPI_Iallreduce`` at once, and the
step waits for all of them before the update.

A bucket holds whole tensors and closes when it reaches ``cap`` bytes of float32
gradient (the last one when the backward pass ends), so every bucket is a contiguous slice
of the parameter vector and the same slices recur every step. Between tensors the
buckets in flight are tested (MPI progresses only inside MPI calls unless asynchronous
progress is on). Payloads per bucket, as DDP's communication hooks: float32 (``none``),
``fp16`` (summed in float16 by a user op) or ``powersgd`` (two dependent allreduces,
P then Q, each started as soon as the one before it completes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import Plan
from hpcopt.aggregation.summable import sum_op
from hpcopt.encoders import Codec
from hpcopt.optim.base import Ledger

__all__ = ["BUCKET_ENCODERS", "Buckets"]

BUCKET_ENCODERS = ("none", "fp16", "powersgd")


class _Bucket:
    """One bucket's slice, codec and the stage of its allreduce(s)."""

    def __init__(self, lo: int, hi: int, codec: Codec) -> None:
        self.lo, self.hi, self.codec = lo, hi, codec
        self.request: MPI.Request = MPI.REQUEST_NULL
        self.stage = 0
        self.payload: Any = None
        self.buffer: Any = None


class Buckets:
    """One rank's bucketed, overlapped allreduce of a gradient that arrives in pieces."""

    def __init__(self, comm: MPI.Comm, dim: int, cap: int, plan: Plan, seed: int) -> None:
        self.comm, self.cap, self.plan, self.seed = comm, cap, plan, seed
        self.total = np.empty(dim, dtype=np.float32)
        self.codecs: dict[tuple[int, int], Codec] = {}
        self.kind = plan.encoder.split(":")[0].strip()
        self.count = 0  # buckets in the last step

    def _start(self, bucket: _Bucket, ledger: Ledger) -> None:
        """Start the bucket's next allreduce (encoding first)."""
        t0 = MPI.Wtime()
        view = self.total[bucket.lo : bucket.hi]
        if self.kind == "none":
            buf, op, dtype = view, MPI.SUM, MPI.FLOAT
        elif self.kind == "fp16":
            bucket.payload = bucket.codec.encode(view, 0)
            (buf,) = bucket.payload.buffers
            op, dtype = sum_op(bucket.codec.sum_dtype)
        else:
            codec: Any = bucket.codec
            buf = codec.project(view) if bucket.stage == 0 else codec.reproject(bucket.buffer)
            op, dtype = MPI.SUM, MPI.FLOAT
        bucket.buffer = buf
        t1 = MPI.Wtime()
        bucket.request = self.comm.Iallreduce(MPI.IN_PLACE, [buf, dtype], op)
        sent = buf.nbytes if self.comm.size > 1 else 0
        ledger.add(sent, {"encode": t1 - t0, "communicate": MPI.Wtime() - t1}, messages=0)
        bucket.stage += 1

    def _finish(self, bucket: _Bucket, ledger: Ledger) -> bool:
        """After an allreduce completed: decode, or start the next stage; True when done."""
        if self.kind == "powersgd" and bucket.stage == 1:
            self._start(bucket, ledger)
            return False
        t0 = MPI.Wtime()
        out = self.total[bucket.lo : bucket.hi]
        if self.kind == "fp16":
            bucket.codec.decode(bucket.payload, out=out)
        elif self.kind == "powersgd":
            codec: Any = bucket.codec
            codec.reconstruct(bucket.buffer, out=out)
        ledger.add(
            0, {"decode": MPI.Wtime() - t0}, messages=(bucket.hi - bucket.lo) / self.total.size
        )
        return True

    def _poll(self, flight: list[_Bucket], ledger: Ledger, wait: bool) -> list[_Bucket]:
        """Advance every bucket whose allreduce completed (with ``wait``: all, in order);
        the buckets still in flight."""
        left = []
        for bucket in flight:
            while True:
                t0 = MPI.Wtime()
                if wait:
                    bucket.request.Wait()
                ready = wait or bucket.request.Test()
                ledger.add(0, {"communicate": MPI.Wtime() - t0}, messages=0)
                if not ready or self._finish(bucket, ledger):
                    break
            if not ready:
                left.append(bucket)
        return left

    def _bucket(self, lo: int, hi: int, ledger: Ledger) -> _Bucket:
        """A bucket over [lo, hi) with its own codec (kept across steps), started."""
        codec = self.codecs.get((lo, hi))
        if codec is None:
            codec = self.codecs[(lo, hi)] = self.plan.codec(seed=self.seed, rank=self.comm.rank)
        bucket = _Bucket(lo, hi, codec)
        self._start(bucket, ledger)
        self.count += 1
        return bucket

    def reduce(self, parts: Iterator[tuple[int, int, np.ndarray]], ledger: Ledger) -> np.ndarray:
        """The sum over ranks of the gradient that ``parts`` yields, tensor by tensor, each
        tensor just below the one before it in the parameter vector."""
        flight: list[_Bucket] = []
        lo = hi = 0  # the open bucket [lo, hi); empty when lo == hi
        self.count = 0
        while True:
            with ledger.phase("compute"):
                part = next(parts, None)
                if part is not None:
                    start, stop, values = part
                    self.total[start:stop] = values
            if part is not None:
                if hi > lo and stop != lo:  # not adjacent: close the open bucket first
                    flight.append(self._bucket(lo, hi, ledger))
                    lo = hi = 0
                hi, lo = (hi if hi > lo else stop), start
            if hi > lo and (part is None or 4 * (hi - lo) >= self.cap):
                flight.append(self._bucket(lo, hi, ledger))
                lo = hi = 0
            flight = self._poll(flight, ledger, wait=part is None)
            if part is None:
                return self.total

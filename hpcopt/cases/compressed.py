"""Compression cases: compressed allreduce across ranks, and encoder throughput on one rank."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Backend, Scratch, sync, to_host
from hpcopt.cases.allreduce import count_mismatches, fill_check_data
from hpcopt.compressed import compressed_allreduce
from hpcopt.encoders import ErrorFeedback, get_encoder
from hpcopt.harness import SweepConfig, iterations_for, time_loop

__all__ = ["CompressCase", "CompressedAllreduceCase", "make_encoder", "normal_data"]

PHASES = ("encode", "communicate", "decode")


def make_encoder(spec: str, rank: int, ef: bool) -> Any:
    """The encoder for ``spec`` on ``rank``, wrapped in error feedback when asked."""
    encoder = get_encoder(spec, seed=0, rank=rank)
    return ErrorFeedback(encoder) if ef else encoder


def normal_data(backend: Backend, count: int, rank: int, seed: int = 1) -> Any:
    """Gradient-like float32 data: standard normal, drawn from (seed, rank, count)."""
    values = np.random.default_rng([seed, rank, count]).standard_normal(count, np.float32)
    return backend.xp.asarray(values)


def relative_error(got: Any, exact: np.ndarray) -> float:
    """‖got − exact‖ / ‖exact‖ in float64 (0 when both are zero)."""
    diff = np.linalg.norm(to_host(got).astype(np.float64) - exact)
    norm = np.linalg.norm(exact)
    return float(diff / norm) if norm > 0 else float(diff)


class _CompressedBuffers:
    """One size of a compressed allreduce: input, encoder state, phase-time totals."""

    def __init__(self, case: CompressedAllreduceCase, size_bytes: int) -> None:
        self.case = case
        self.count = size_bytes // 4
        self.size_bytes = self.count * 4
        self.x = normal_data(case.backend, self.count, case.comm.rank)
        self.encoder = make_encoder(case.spec, case.comm.rank, case.ef)
        self.scratch = Scratch(case.backend.xp)
        self.step, self.calls = 0, 0
        self.phase_totals = dict.fromkeys(PHASES, 0.0)

    def _call(self, x: Any) -> Any:
        self.step += 1
        return compressed_allreduce(
            self.case.comm, x, self.encoder, method=self.case.method, step=self.step,
            algorithm=self.case.core_algo, scratch=self.scratch,
        )  # fmt: skip

    def begin_timed(self) -> None:
        """Count phase times of the timed iterations only."""
        self.calls = 0
        self.phase_totals = dict.fromkeys(PHASES, 0.0)

    def run(self) -> int:
        result = self._call(self.x)
        self.calls += 1
        for phase in PHASES:
            self.phase_totals[phase] += result.times[phase]
        return result.nbytes

    def sync(self) -> None:
        sync(self.x)

    def check(self) -> dict[str, Any]:
        """Exact sum by MPI in float64; relative error; NaN/Inf (or, for none, any miss) wrong."""
        comm = self.case.comm
        data = self.x
        if self.case.encoder_name == "none":
            data = self.case.backend.xp.empty_like(self.x)
            fill_check_data(data, comm.rank)
        exact = to_host(data).astype(np.float64)
        comm.Allreduce(MPI.IN_PLACE, exact, MPI.SUM)
        self.encoder = make_encoder(self.case.spec, comm.rank, self.case.ef)  # no residual yet
        out = self._call(data).out
        host = to_host(out)
        if self.case.encoder_name == "none" and not self.case.ef:
            wrong = count_mismatches(host, exact.astype(np.float32))
        else:
            wrong = int(np.count_nonzero(~np.isfinite(host)))
        fields: dict[str, Any] = {"wrong": wrong, "rel_error": relative_error(host, exact)}
        calls = max(self.calls, 1)
        fields.update({f"t_{p}_s": total / calls for p, total in self.phase_totals.items()})
        return fields


class CompressedAllreduceCase:
    """A compressed allreduce (encoder, aggregation method, core algorithm) on float32."""

    kernel = "allreduce"
    dtype = "float32"
    itemsize = 4

    def __init__(
        self, comm: MPI.Comm, backend: Backend, encoder: str, *, ef: bool, method: str,
        core_algo: str, label: str,
    ) -> None:  # fmt: skip
        self.comm, self.backend, self.ef, self.method = comm, backend, ef, method
        self.core_algo, self.algo, self.spec = core_algo, label, encoder
        self.encoder = f"{encoder}+ef" if ef else encoder
        self.encoder_name = encoder.partition(":")[0]
        self.record_fields = {"op": "sum", "device": backend.device, "method": method}

    def bus_factor(self, ranks: int) -> float:
        return 2 * (ranks - 1) / ranks

    def prepare(self, size_bytes: int) -> _CompressedBuffers:
        return _CompressedBuffers(self, size_bytes)


class _Decode:
    """Adapter that lets the harness's timing loop time ``decode`` of one payload."""

    def __init__(self, encoder: Any, payload: Any, out: Any) -> None:
        self.encoder, self.payload, self.out = encoder, payload, out

    def run(self) -> int:
        self.encoder.decode(self.payload, self.out)
        return 0

    def sync(self) -> None:
        sync(self.out)


class _EncodeBuffers:
    """One size of the encoder-throughput case: input, output and the last payload."""

    def __init__(self, case: CompressCase, size_bytes: int) -> None:
        self.case = case
        self.count = size_bytes // 4
        self.size_bytes = self.count * 4
        self.x = normal_data(case.backend, self.count, 0)
        self.out = case.backend.xp.empty_like(self.x)
        self.encoder = make_encoder(case.spec, 0, case.ef)
        self.payload: Any = None
        self.step = 0

    def run(self) -> int:
        self.step += 1
        self.payload = self.encoder.encode(self.x, self.step)
        return self.payload.nbytes

    def sync(self) -> None:
        sync(self.x)

    def check(self) -> dict[str, Any]:
        """Decode throughput (same timing loop), compression ratio and relative error."""
        encoder = make_encoder(self.case.spec, 0, self.case.ef)  # no residual carried over
        payload = encoder.encode(self.x, self.step + 1)
        decode = _Decode(encoder, payload, self.out)
        times = np.zeros(iterations_for(self.size_bytes, self.case.cfg)[1])
        time_loop(self.case.comm, decode, 1, times, "none")
        decoded = to_host(self.out)
        mean = float(times.mean())
        return {
            "wrong": int(np.count_nonzero(~np.isfinite(decoded))),
            "rel_error": relative_error(decoded, to_host(self.x).astype(np.float64)),
            "compression_ratio": self.size_bytes / payload.nbytes if payload.nbytes else 0.0,
            "decode_t_avg_s": mean,
            "decode_GBps": self.size_bytes / mean / 1e9 if mean > 0 else 0.0,
        }


class CompressCase:
    """Encode throughput (timed by the harness) and decode throughput of one encoder."""

    kernel = "compress"
    algo = "encode"
    dtype = "float32"
    itemsize = 4

    def __init__(
        self, comm: MPI.Comm, backend: Backend, spec: str, *, ef: bool, cfg: SweepConfig
    ) -> None:
        self.comm, self.backend, self.spec, self.ef, self.cfg = comm, backend, spec, ef, cfg
        self.encoder = f"{spec}+ef" if ef else spec
        self.record_fields = {"device": backend.device}

    def bus_factor(self, ranks: int) -> float:
        return 1.0

    def prepare(self, size_bytes: int) -> _EncodeBuffers:
        return _EncodeBuffers(self, size_bytes)

    def finish_record(self, fields: dict[str, Any]) -> None:
        """The harness-timed operation is the encode: its algbw is the encode throughput."""
        fields["encode_GBps"] = fields["algbw_GBps"]

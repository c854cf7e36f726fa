"""The one timing harness: size sweeps, warm-up, per-iteration timing, statistics.

A *case* (an allreduce algorithm, a p2p pattern, ...) only says how to prepare
buffers for a size, how to run the operation once and how to check it; the harness
owns warm-up, timing, barriers, the cross-rank reduction of samples, algbw/busbw,
the log record and the printed row. Operations never time themselves.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt import timer as ctimer
from hpcopt.bench import wire
from hpcopt.bench.guard import SweepGuard
from hpcopt.errors import UsageError
from hpcopt.record import merge_per_rank

__all__ = [
    "BARRIER_POLICIES",
    "Case",
    "Prepared",
    "SweepConfig",
    "iterations_for",
    "measure",
    "plan_sizes",
    "resolve_timer",
    "run_sweep",
    "size_sweep",
    "summarize",
    "time_loop",
    "whole_items",
]

BARRIER_POLICIES = {
    "iter": "MPI_Barrier before every timed iteration (not timed)",
    "none": "one MPI_Barrier before the timed loop, iterations back to back",
}
MAX_SIZES = 1000
SCALE_ABOVE_BYTES = 1 << 20
MIN_SCALED_ITERS = 10
MIN_SCALED_WARMUP = 2
GB = 1e9
PROGRESS_AFTER_S = 10.0
TIMERS = ("auto", "c", "python")


class Prepared:
    """Buffers of one case at one size, allocated once; what the harness times and checks.

    Subclasses set ``count`` and ``size_bytes`` and implement :meth:`run` and :meth:`check`;
    the other members have defaults that fit most operations.
    """

    count: int = 0
    size_bytes: int = 0
    messages_per_call = 1  # a call that moves several messages divides its samples by this
    host_only = False  # no device stream to synchronize inside the timed window
    wire_kind = "counted"  # "nominal": run() returns the buffer handed to MPI's own operation
    buffer_sets = 1  # rotating buffer sets in use (see plan_calls)
    timing_comm: MPI.Comm | None = None  # the C core's communicator when not the run's

    def run(self) -> int:
        """Perform the operation once; return the bytes this rank handed to MPI."""
        raise NotImplementedError

    def timed_call(self) -> Callable[[], Any]:
        """The call the timed loop makes: :meth:`run` unless a leaner one is bound."""
        return self.run

    def check(self) -> dict[str, Any]:
        """Correctness pass outside the timed loop: at least ``{"wrong": int}``."""
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for device work so that a timer read after it is honest."""

    def begin_timed(self) -> None:
        """Called once the warm-ups are done (e.g. to forget their phase counters)."""

    def plan_calls(self, calls: int, buffers: int) -> None:
        """Called once the iteration counts are known, before any call: ``calls`` warm-ups
        and timed calls will be made; ``buffers`` sets were asked for (0: auto)."""

    def c_call(self) -> ctimer.TimedCall | None:
        """MPI's own operation for the C timing core to time, or None (the Python loop)."""
        return None

    def iteration_bytes(self) -> int:
        """Bytes one call moves, which sets the iteration scaling (default ``size_bytes``)."""
        return self.size_bytes


class Case:
    """One timed operation over a size sweep (nccl-tests' per-collective record)."""

    kernel = ""
    algo = ""
    encoder = "none"
    dtype = "uint8"
    itemsize = 1  # sizes are rounded down to whole elements
    sizeless = False  # moves no data (a barrier): one record at 0 B, whatever the sizes
    note = ""  # a line for the printed header (e.g. what a size means)
    console = ""  # the console layout (record.CONSOLE) when not the kernel's own

    def bus_factor(self, ranks: int) -> float:
        """busbw = algbw × this factor (nccl-tests' convention; 1 when there is none)."""
        return 1.0

    def algbw_bytes(self, size_bytes: int, ranks: int) -> int:
        """The bytes algbw divides by the time (nccl-tests' size; default ``size_bytes``)."""
        return size_bytes

    def record_fields(self) -> dict[str, Any]:
        """Constant fields added to each of this case's records."""
        return {}

    def footprint(self, size_bytes: int) -> int:
        """Bytes one rank allocates for one size, the correctness pass included."""
        return 3 * size_bytes

    def notes(self) -> list[str]:
        """Lines for the run's header: ``note``, and what this case does differently from
        what was asked."""
        return [self.note] if self.note else []

    def prepare(self, size_bytes: int) -> Prepared:
        """Allocate the buffers for one size."""
        raise NotImplementedError

    def finish_record(self, fields: dict[str, Any]) -> None:
        """Adjust the record once the harness has filled it (e.g. derived throughputs)."""


@dataclass(frozen=True)
class SweepConfig:
    """Sizes, iteration counts and policies shared by every case of a run."""

    sizes: Sequence[int]
    warmup: int = 5
    iters: int = 50
    scale_iters: bool = True
    barrier: str = "iter"
    check: bool = True
    timer: str = "python"  # "c": MPI's own operations timed by the C core where cases allow
    buffers: int = 1  # rotating buffer sets per size (0: auto)


def size_sweep(minbytes: int, maxbytes: int, factor: float) -> list[int]:
    """Sizes from ``minbytes`` to ``maxbytes`` multiplying by ``factor`` (at most MAX_SIZES)."""
    if minbytes < 0 or maxbytes < 0:
        raise UsageError("sizes must not be negative")
    if minbytes > maxbytes:
        raise UsageError(f"min size {minbytes} B is larger than max size {maxbytes} B")
    if minbytes != maxbytes and not (math.isfinite(factor) and factor > 1):
        raise UsageError(f"step factor must be a finite number > 1, got {factor}")
    sizes: list[int] = []
    size = minbytes
    while size <= maxbytes:
        if len(sizes) == MAX_SIZES:
            raise UsageError(
                f"the sweep has more than {MAX_SIZES} sizes; use a larger step factor (-f)"
            )
        sizes.append(size)
        if size == maxbytes:
            break
        size = max(size + 1, int(size * factor)) if size else 1
    return sizes


def whole_items(sizes: Sequence[int], itemsize: int) -> list[int]:
    """Sizes rounded down to whole elements, without repeats."""
    return list(dict.fromkeys(size - size % itemsize for size in sizes))


def plan_sizes(
    cases: Sequence[Case], sizes: Sequence[int], *, strict: bool = True
) -> tuple[list[tuple[Case, list[int]]], list[str]]:
    """Each case's sizes in whole elements, and a note for each element size that rounded.

    A size between zero and one element cannot be measured: with ``strict`` (a smallest
    size the user chose) a UsageError; otherwise such sizes are skipped with a note, unless
    none is left.
    """
    notes: dict[str, None] = {}  # in order, each once
    plans = []
    for case in cases:
        if case.sizeless:
            plans.append((case, [0]))
            continue
        item, mine = case.itemsize, list(sizes)
        if mine and 0 < mine[0] < item:
            kept = [s for s in mine if not 0 < s < item]
            if strict or not kept:
                raise UsageError(
                    f"size {mine[0]} B is less than one {case.dtype} element ({item} B); "
                    f"use -b {item} or more"
                )
            skipped = ", ".join(str(s) for s in mine if 0 < s < item)
            notes[f"sizes below one {case.dtype} element of this operation ({item} B) "
                  f"skipped: {skipped}"] = None  # fmt: skip
            mine = kept
        rounded = [f"{s} -> {s - s % item}" for s in mine if s % item]
        if rounded:
            shown = ", ".join(rounded[:4]) + (", ..." if len(rounded) > 4 else "")
            notes[f"sizes rounded down to whole {case.dtype} elements: {shown}"] = None
        plans.append((case, whole_items(mine, item)))
    told = list(dict.fromkeys(note for case in cases for note in case.notes()))
    return plans, list(notes) + told


def iterations_for(size_bytes: int, cfg: SweepConfig) -> tuple[int, int]:
    """(warm-up, timed) iteration counts, scaled down above 1 MiB when allowed."""
    if not cfg.scale_iters or size_bytes <= SCALE_ABOVE_BYTES:
        return cfg.warmup, cfg.iters
    shrink = SCALE_ABOVE_BYTES / size_bytes
    iters = max(min(cfg.iters, MIN_SCALED_ITERS), math.ceil(cfg.iters * shrink))
    warmup = max(min(cfg.warmup, MIN_SCALED_WARMUP), math.ceil(cfg.warmup * shrink))
    return warmup, iters


def time_loop(
    comm: MPI.Comm, prepared: Prepared, warmup: int, times: np.ndarray, barrier: str
) -> int:
    """Warm up, then fill ``times`` with one sample per iteration; returns bytes per call.

    The timed loop calls ``prepared.timed_call()`` (the same operation with everything
    bound). Unless the case is ``host_only``, the device stream is synchronized inside
    each timed window.
    """
    sent = 0
    for _ in range(warmup):
        sent = prepared.run()
    # Without warm-ups the bytes come from the timed calls: they run ``run`` itself.
    run = prepared.timed_call() if warmup else prepared.run
    if not prepared.host_only:
        run = _then_sync(run, prepared.sync)
    prepared.begin_timed()
    prepared.sync()
    comm.Barrier()
    per_iter, sync_all, wtime = barrier == "iter", comm.Barrier, MPI.Wtime
    result: Any = None
    for i in range(times.size):
        if per_iter:
            sync_all()
        t0 = wtime()
        result = run()
        times[i] = wtime() - t0
    return sent if warmup else int(result or 0)


def resolve_timer(comm: MPI.Comm, cfg: SweepConfig) -> SweepConfig:
    """``auto`` becomes ``c`` when the C core works on every rank, else ``python``
    (collective); an explicit choice stays."""
    if cfg.timer not in TIMERS:
        raise UsageError(f"--timer must be one of {', '.join(TIMERS)}, got {cfg.timer!r}")
    if cfg.timer != "auto":
        return cfg
    return replace(cfg, timer="c" if ctimer.available(comm) else "python")


def _time_in_c(
    comm: MPI.Comm, prepared: Prepared, call: ctimer.TimedCall, warmup: int, times: np.ndarray,
    barrier: str,
) -> tuple[int, dict[str, float]]:  # fmt: skip
    """The C core times ``call``; one untimed Python call before it gives the bytes."""
    sent = prepared.run()
    prepared.sync()
    phases: dict[str, np.ndarray] = {}
    if call.mode == "nonblocking":
        phases = {"t_pure_s": np.zeros_like(times), "t_compute_s": np.zeros_like(times)}
    ctimer.time_call(
        prepared.timing_comm or comm, call, times, warmup=warmup, barrier=barrier,
        t_pure=phases.get("t_pure_s"), t_compute=phases.get("t_compute_s"),
    )  # fmt: skip
    prepared.sync()
    return sent, {name: float(values.mean()) for name, values in phases.items()}


def _timed(
    comm: MPI.Comm, prepared: Prepared, warmup: int, times: np.ndarray, cfg: SweepConfig
) -> tuple[int, dict[str, Any], str]:
    """Time with the C core when asked and the case has a call for it, else in Python;
    returns bytes per call, per-rank extra fields and the timer used. Samples are per
    message either way."""
    call = prepared.c_call() if cfg.timer == "c" else None
    if call is None:
        sent = time_loop(comm, prepared, warmup, times, cfg.barrier)
        times /= prepared.messages_per_call
        return sent, {}, "python"
    sent, extra = _time_in_c(comm, prepared, call, warmup, times, cfg.barrier)
    return sent, extra, "c"


def _then_sync(run: Callable[[], Any], sync: Callable[[], None]) -> Callable[[], Any]:
    """``run`` followed by ``sync``, so that the timer stops after the device is done."""

    def call() -> Any:
        result = run()
        sync()
        return result

    return call


def summarize(times: np.ndarray, size_bytes: int, bus_factor: float) -> dict[str, float]:
    """Cross-rank statistics of a (ranks, iters) array of seconds.

    t_avg/t_min/t_max: mean/min/max over ranks of each rank's mean (as OSU reports);
    t_p50/t_p99: percentiles over iterations of the slowest rank's time.
    """
    per_rank = times.mean(axis=1)
    slowest = times.max(axis=0)
    t_avg = float(per_rank.mean())
    algbw = size_bytes / t_avg / GB if t_avg > 0 else 0.0
    return {
        "t_min_s": float(per_rank.min()),
        "t_avg_s": t_avg,
        "t_max_s": float(per_rank.max()),
        "t_p50_s": float(np.percentile(slowest, 50)),
        "t_p99_s": float(np.percentile(slowest, 99)),
        "algbw_GBps": algbw,
        "busbw_GBps": algbw * bus_factor,
    }


Emit = Callable[[dict[str, Any], dict[str, np.ndarray]], None]


def measure(
    comm: MPI.Comm, case: Case, size: int, cfg: SweepConfig
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Time one case at one size; the record's fields and arrays on rank 0."""
    prepared = case.prepare(size)
    warmup, iters = iterations_for(prepared.iteration_bytes(), cfg)
    prepared.plan_calls(warmup + iters, cfg.buffers)
    times = np.zeros(iters)
    sent, phase_means, timer = _timed(comm, prepared, warmup, times, cfg)
    per_call, sets, wire_kind = prepared.messages_per_call, prepared.buffer_sets, prepared.wire_kind
    checked = prepared.check() if cfg.check else {"wrong": 0}
    checked.update(phase_means)
    iface = wire.measurable(comm) if wire.interface() else ""  # extra calls, after the check
    measured = wire.measure_calls(comm, iface, prepared.run, iters) if iface else None
    size = prepared.size_bytes
    del prepared
    gc.collect()  # free this size's buffers now, even if a case holds a reference cycle
    p = comm.size
    all_times = np.empty((p, iters)) if comm.rank == 0 else None
    comm.Gather(times, all_times, root=0)
    sent_array = np.array([sent], dtype=np.int64)
    all_wire = np.empty(p, dtype=np.int64) if comm.rank == 0 else None
    comm.Gather(sent_array, all_wire, root=0)
    all_measured = comm.gather(measured, root=0)
    wrong = np.array([checked.pop("wrong")], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, wrong)
    extra = comm.gather(checked, root=0)
    if comm.rank != 0:
        return {"wrong": int(wrong[0])}, {}
    assert all_times is not None and all_wire is not None and extra is not None
    fields: dict[str, Any] = {
        "kernel": case.kernel,
        "algo": case.algo,
        "encoder": case.encoder,
        "dtype": case.dtype,
        "size_bytes": size,
        "ranks": p,
        "warmup": warmup,
        "iters": iters,
        "barrier": cfg.barrier,
        "checked": cfg.check,
        "wrong": int(wrong[0]),
        "wire_bytes": int(all_wire.max()),
        "wire_bytes_kind": wire_kind,
        "messages_per_call": per_call,
        "timer": timer,
        "buffers": sets,
    }
    fields.update(case.record_fields())
    fields.update(summarize(all_times, case.algbw_bytes(size, p), case.bus_factor(p)))
    fields.update(merge_per_rank(extra))
    arrays = {"times_s": all_times, "wire_bytes_per_rank": all_wire}
    if all_measured is not None and all_measured[0] is not None:
        arrays["wire_bytes_measured_per_rank"] = np.array(all_measured)
        fields["wire_bytes_measured"] = round(max(all_measured))
    case.finish_record(fields)
    return fields, arrays


def run_sweep(
    comm: MPI.Comm,
    plans: Sequence[tuple[Case, Sequence[int]]],
    cfg: SweepConfig,
    emit: Emit,
    *,
    progress: bool = True,
    guard: SweepGuard | None = None,
    done: Container[tuple[str, str, str, int]] = frozenset(),
) -> int:
    """Run every case over its sizes; ``emit`` gets each record on rank 0. Returns wrong total.

    ``done`` lists (algo, encoder, dtype, size) pairs already measured (a resumed run).
    With a ``guard``, each step is watched and a signal stops the sweep after a record.
    """
    todo = [
        (case, size)
        for case, sizes in plans
        for size in sizes
        if (case.algo, case.encoder, case.dtype, size) not in done
    ]
    total_wrong, start = 0, time.monotonic()
    for step, (case, size) in enumerate(todo, 1):
        if guard is not None:
            guard.arm(step, f"{case.kernel} {case.algo} ({case.encoder}) at {size} B")
        fields, arrays = measure(comm, case, size, cfg)
        if guard is not None:
            guard.disarm()
        total_wrong += fields["wrong"]
        if comm.rank == 0:
            emit(fields, arrays)
        # The record is on disk before any rank can fail at the next size or stop.
        if guard is not None:
            guard.stop_requested()
        else:
            comm.Barrier()
        if comm.rank == 0 and progress and time.monotonic() - start > PROGRESS_AFTER_S:
            print(
                f"[{case.kernel}] {case.algo} {size} B done ({step}/{len(todo)})",
                file=sys.stderr,
                flush=True,
            )
    return total_wrong

"""The C timing core from Python: describe one call, let C fill the samples array."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.errors import UsageError
from hpcopt.timer.build import BuildError, cache_dir, ensure_library

__all__ = [
    "BARRIERS",
    "MODES",
    "Operation",
    "TimedCall",
    "TimerStatus",
    "available",
    "buffer_address",
    "operation",
    "operations",
    "overlap_percent",
    "status",
    "time_call",
]

MODES = ("blocking", "nonblocking", "persistent")
BARRIERS = ("iter", "none")
INT_MAX = 2**31 - 1
# Buffer layout codes of the C table: blocks of `count` elements.
_NONE, _ONE, _P_BLOCKS, _WINDOW, _NEIGHBORS, _AT_ROOT = 0, 1, 2, 3, 4, 8
_NO_PERSISTENT = "persistent collectives are not available in this MPI (no MPI-4 *_init calls)"
_C_ERRORS = {
    -1: "the C core has no such operation",
    -2: _NO_PERSISTENT,
    -3: "this operation has no such mode in the C core",
    -4: "point-to-point patterns need an even number of ranks",
    -5: "the C core ran out of memory",
}


@dataclass(frozen=True)
class Operation:
    """One entry of the C core's operation table."""

    name: str
    index: int
    pattern: bool  # point-to-point between ranks r and r + p/2; else a collective
    rooted: bool
    has_in_place: bool
    send: int  # layout codes (blocks of count elements; see loops.c)
    recv: int
    recv_in_place: int
    messages: int  # C divides each sample by this; 0 means by the window

    @property
    def neighborhood(self) -> bool:
        """A neighbourhood collective: needs a communicator with a topology."""
        return self.recv & ~_AT_ROOT == _NEIGHBORS


@dataclass(frozen=True)
class TimerStatus:
    """Whether the C core works here, and a one-line reason or location."""

    available: bool
    reason: str
    cache: Path
    library: Path | None = None
    persistent: bool = False


@dataclass(frozen=True, eq=False)
class TimedCall:
    """One MPI operation for the C loop: which, on which buffer sets, and how.

    ``send``/``recv`` hold one contiguous array per buffer set (iteration i uses set
    i % N); a side the operation does not use may be empty. ``count`` is the MPI count
    argument: one block; patterns send ``window`` blocks per call from consecutive slots.
    Bcast uses ``recv`` only. Rooted operations use ``root``, or root k % p for call k
    with ``rotate_root``. ``compute_s`` (nonblocking) is the dummy compute per
    iteration, 0 for OSU's choice (the mean time of the operation alone); ``tests`` is
    the number of MPI_Test calls spread in it. Calls are numbered from 0 with the
    warm-ups; the nonblocking mode's overlapped phase goes on numbering after the
    operation-alone phase.
    """

    operation: str
    count: int
    send: Sequence[Any] = ()
    recv: Sequence[Any] = ()
    datatype: MPI.Datatype = field(default_factory=lambda: MPI.BYTE)
    op: MPI.Op = field(default_factory=lambda: MPI.SUM)
    in_place: bool = False
    root: int = 0
    rotate_root: bool = False
    window: int = 1
    mode: str = "blocking"
    compute_s: float = 0.0
    tests: int = 0


class _CCall(ctypes.Structure):
    """``struct call`` of loops.c, field by field."""

    _INTS = ("operation", "mode", "in_place", "root", "rotate_root", "window", "nsets")
    _fields_ = [
        *[(name, ctypes.c_int32) for name in (*_INTS, "barrier_each", "warmup", "tests")],
        ("count", ctypes.c_int64),
        ("iters", ctypes.c_int64),
        ("compute_s", ctypes.c_double),
        ("send", ctypes.POINTER(ctypes.c_void_p)),
        ("recv", ctypes.POINTER(ctypes.c_void_p)),
    ]


_HANDLE_TYPES = {4: ctypes.c_uint32, 8: ctypes.c_uint64}


class _Core:
    """The loaded library, its operation table and the handle types of this MPI."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        sizes = (ctypes.c_int32 * 3)()
        lib.hpcopt_abi.restype = ctypes.c_char_p
        family = lib.hpcopt_abi(sizes).decode()
        classes = (MPI.Comm, MPI.Datatype, MPI.Op)
        expected = tuple(MPI._sizeof(cls) for cls in classes)
        runtime = MPI.Get_library_version().strip().splitlines()[0]
        if tuple(sizes) != expected or any(size not in _HANDLE_TYPES for size in expected):
            raise BuildError(f"core built for handle sizes {tuple(sizes)}, mpi4py has {expected}")
        if (family == "Open MPI") != ("Open MPI" in runtime):
            raise BuildError(f"core built with {family}'s mpi.h, but mpi4py runs {runtime}")
        handles = [_HANDLE_TYPES[size] for size in expected]
        lib.hpcopt_time.argtypes = [ctypes.POINTER(_CCall), *handles, *[ctypes.c_void_p] * 3]
        lib.hpcopt_time.restype = ctypes.c_int
        self.run = lib.hpcopt_time
        self.persistent = bool(lib.hpcopt_has_persistent())
        self.operations = _read_operations(lib)


def _read_operations(lib: ctypes.CDLL) -> dict[str, Operation]:
    lib.hpcopt_operation.restype = ctypes.c_char_p
    info = (ctypes.c_int32 * 7)()
    table: dict[str, Operation] = {}
    while (name := lib.hpcopt_operation(len(table), info)) is not None:
        pattern, rooted, in_place, send, recv, recv_ip, messages = info
        table[name.decode()] = Operation(
            name.decode(), len(table), bool(pattern), bool(rooted), bool(in_place),
            send, recv, recv_ip, messages,
        )  # fmt: skip
    return table


@lru_cache(maxsize=1)
def _loaded() -> tuple[TimerStatus, _Core | None]:
    try:
        path = ensure_library(MPI.Get_library_version())
        core = _Core(path)
    except (BuildError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return TimerStatus(False, reason, cache_dir()), None
    return TimerStatus(True, str(path), cache_dir(), path, core.persistent), core


def status() -> TimerStatus:
    """Build or load the C core on first use; whether it works, and why not."""
    return _loaded()[0]


def available(comm: MPI.Comm | None = None) -> bool:
    """True when the C core works here; with ``comm``, on every rank of it (collective)."""
    here = status().available
    return here if comm is None else bool(comm.allreduce(here, op=MPI.LAND))


def _core() -> _Core:
    state, core = _loaded()
    if core is None:
        raise UsageError(f"the C timer is not available: {state.reason}")
    return core


def operations() -> tuple[str, ...]:
    """Names of the operations the C core times."""
    return tuple(_core().operations)


def operation(name: str) -> Operation:
    """The table entry of one operation; UsageError for an unknown name."""
    table = _core().operations
    if name not in table:
        raise UsageError(f"the C timer has no operation {name!r}; known: {', '.join(table)}")
    return table[name]


def buffer_address(buf: Any) -> tuple[int, int]:
    """(address, bytes) of a contiguous NumPy array or a device array (CUDA array interface)."""
    flags = getattr(buf, "flags", None)
    if flags is None or not flags.c_contiguous:
        raise UsageError("C timer buffers must be contiguous NumPy or device arrays")
    device = getattr(buf, "__cuda_array_interface__", None)
    if device is not None:
        return int(device["data"][0]), int(buf.nbytes)
    if not isinstance(buf, np.ndarray) or not buf.flags.writeable:
        raise UsageError("C timer buffers must be writable arrays")
    return buf.ctypes.data, buf.nbytes


def overlap_percent(t_pure: np.ndarray, t_total: np.ndarray, t_compute: np.ndarray) -> float:
    """OSU's overlap: 100·max(0, 1 − (t_total − t_compute)/t_pure), from the means, at most
    100 (a noisy compute phase can outlast the overlapped one: the call was wholly hidden)."""
    pure = float(np.mean(t_pure))
    if pure <= 0:
        return 0.0
    hidden = 1.0 - (float(np.mean(t_total)) - float(np.mean(t_compute))) / pure
    return 100.0 * min(1.0, max(0.0, hidden))


def _blocks(code: int, may_be_root: bool, ranks: int, window: int, degree: int) -> int:
    if code & _AT_ROOT and not may_be_root:
        return 0
    blocks = {_NONE: 0, _ONE: 1, _P_BLOCKS: ranks, _WINDOW: window, _NEIGHBORS: degree}
    return blocks[code & ~_AT_ROOT]


def _in_degree(comm: MPI.Comm, info: Operation) -> int:
    """In-neighbours of a distributed-graph communicator (neighbourhood operations only)."""
    if not info.neighborhood:
        return 0
    if not isinstance(comm, MPI.Distgraphcomm):
        raise UsageError(f"{info.name} needs a distributed-graph communicator")
    return int(comm.indegree)


def _check_options(comm: MPI.Comm, call: TimedCall, info: Operation, core: _Core) -> None:
    name, p = call.operation, comm.Get_size()
    if call.mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {call.mode!r}")
    if info.pattern and call.mode != "blocking":
        raise UsageError(f"{name} is a point-to-point pattern: mode blocking only")
    if call.mode == "persistent" and not core.persistent:
        raise UsageError(_NO_PERSISTENT)
    if info.pattern and (p < 2 or p % 2):
        raise UsageError(f"{name} pairs rank r with r + p/2: needs an even rank count, got {p}")
    if call.in_place and not info.has_in_place:
        raise UsageError(f"{name} has no in-place form")
    if call.rotate_root and not info.rooted:
        raise UsageError(f"{name} has no root to rotate")
    if info.rooted and not 0 <= call.root < p:
        raise UsageError(f"root {call.root} is outside the communicator of {p} ranks")
    if not 0 <= call.count <= INT_MAX:
        raise UsageError(f"count must be in 0..{INT_MAX}, got {call.count}")
    if call.window < 1 or call.tests < 0 or call.compute_s < 0:
        raise UsageError("window must be >= 1, tests and compute_s >= 0")


def _addresses(comm: MPI.Comm, call: TimedCall, info: Operation) -> tuple[Any, Any, int]:
    """ctypes arrays of send and recv addresses (NULL where unused), and the set count."""
    nsets = max(len(call.send), len(call.recv), 1)
    may_be_root = call.rotate_root or comm.Get_rank() == call.root
    p, extent = comm.Get_size(), call.datatype.Get_extent()[1]
    degree = _in_degree(comm, info)
    send_code = _NONE if call.in_place and not info.rooted else info.send
    recv_code = info.recv_in_place if call.in_place else info.recv
    sides = []
    for side, buffers, code in (("send", call.send, send_code), ("recv", call.recv, recv_code)):
        need = _blocks(code, may_be_root, p, call.window, degree) * call.count * extent
        if buffers and len(buffers) != nsets:
            raise UsageError(f"{len(buffers)} {side} buffer sets, {nsets} expected")
        if need and not buffers:
            raise UsageError(f"{call.operation} needs {side} buffers")
        pointers = (ctypes.c_void_p * nsets)()
        for i, buf in enumerate(buffers):
            address, nbytes = buffer_address(buf)
            if nbytes < need:
                raise UsageError(f"{side} buffer {i} has {nbytes} B, {need} B needed")
            pointers[i] = address
        sides.append(pointers)
    return sides[0], sides[1], nsets


def _sample_array(name: str, arr: np.ndarray | None, iters: int) -> int:
    """Address of a writable 1-D float64 array of ``iters`` samples; UsageError otherwise."""
    if (
        not isinstance(arr, np.ndarray)
        or (arr.dtype, arr.ndim, arr.size) != (np.float64, 1, iters)
        or not (arr.flags.c_contiguous and arr.flags.writeable)
    ):
        raise UsageError(f"{name} must be a writable float64 array of {iters} samples")
    return int(arr.ctypes.data)


def time_call(
    comm: MPI.Comm,
    call: TimedCall,
    samples: np.ndarray,
    *,
    warmup: int = 0,
    barrier: str = "iter",
    t_pure: np.ndarray | None = None,
    t_compute: np.ndarray | None = None,
) -> None:
    """Run ``warmup`` untimed calls, then fill ``samples`` with one time (s) per call, in C.

    Barrier ``iter``: MPI_Barrier before every timed call (not timed); ``none``: one
    barrier, then calls back to back. Nonblocking mode: ``samples`` gets t_total and
    ``t_pure``/``t_compute`` (same length) the other two phases. Device buffers: the
    caller synchronizes its stream before and after.
    """
    core = _core()
    info = operation(call.operation)
    _check_options(comm, call, info, core)
    if barrier not in BARRIERS:
        raise UsageError(f"barrier must be one of {', '.join(BARRIERS)}, got {barrier!r}")
    if not 0 <= warmup <= INT_MAX:
        raise UsageError(f"warmup must be in 0..{INT_MAX}, got {warmup}")
    iters = samples.size if isinstance(samples, np.ndarray) else 0
    out = [_sample_array("samples", samples, iters)]
    if call.mode == "nonblocking":
        out += [
            _sample_array("t_pure", t_pure, iters),
            _sample_array("t_compute", t_compute, iters),
        ]
    send, recv, nsets = _addresses(comm, call, info)
    c_call = _CCall(
        info.index, MODES.index(call.mode), call.in_place, call.root, call.rotate_root,
        call.window, nsets, barrier == "iter", warmup, call.tests,
        call.count, iters, call.compute_s, send, recv,
    )  # fmt: skip
    handles = (MPI._handleof(comm), MPI._handleof(call.datatype), MPI._handleof(call.op))
    rc = core.run(ctypes.byref(c_call), *handles, *out, *[None] * (3 - len(out)))
    if rc > 0:
        raise MPI.Exception(rc)
    if rc < 0:
        raise UsageError(_C_ERRORS.get(rc, f"the C core failed ({rc})"))

"""Array backends (NumPy on the CPU, CuPy on a GPU) behind one small interface.

Algorithms never import NumPy or CuPy for their array work: they ask
:func:`array_module` for the module that owns a buffer, so the same code runs on
host and device arrays. MPI only ever sees a buffer after :func:`sync`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from hpcopt.errors import UsageError

__all__ = [
    "ALIGN_BYTES",
    "Backend",
    "Scratch",
    "aligned_full",
    "array_module",
    "cuda_aware_mpi",
    "cupy_or_none",
    "get_backend",
    "is_device_array",
    "sync",
    "to_host",
]

DEVICES = ("cpu", "cuda")
MAX_PLANS = 8


def cupy_or_none() -> ModuleType | None:
    """The cupy module when it is installed and a GPU is usable, else None."""
    try:
        import cupy
    except Exception:
        return None
    try:
        if not cupy.cuda.is_available():
            return None
        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return None
    return cupy


def is_device_array(x: Any) -> bool:
    """True for arrays that live in GPU memory (CuPy and friends)."""
    return not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__")


def array_module(x: Any) -> ModuleType:
    """The array module (numpy or cupy) that owns ``x``."""
    if is_device_array(x):
        import cupy

        return cupy
    return np


def sync(x: Any) -> None:
    """Wait for pending GPU work on ``x``'s stream before MPI reads or writes it."""
    if is_device_array(x):
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy (or the array itself) of ``x``."""
    if is_device_array(x):
        return x.get()
    return np.asarray(x)


def cuda_aware_mpi() -> bool:
    """Whether the MPI library accepts device buffers.

    ``HPCOPT_CUDA_AWARE=0|1`` overrides; otherwise the MPI-4.1 memory allocation
    kinds of COMM_WORLD are asked for a ``cuda`` kind. Unknown means False: staging
    through host memory is always correct.
    """
    forced = os.environ.get("HPCOPT_CUDA_AWARE")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    from mpi4py import MPI

    try:
        kinds = MPI.COMM_WORLD.Get_info().Get("mpi_memory_alloc_kinds") or ""
    except Exception:
        return False
    return any(kind.split(":")[0] == "cuda" for kind in kinds.split(","))


ALIGN_BYTES = 64


def aligned_full(xp: ModuleType, count: int, value: Any, dtype: Any) -> Any:
    """A 1-D array whose data starts on a 64-byte boundary (host; device memory already is).

    Where a message starts within a page changes MPI's shared-memory copy speed by tens
    of percent at some sizes; fixing the alignment keeps runs comparable.
    """
    dtype = np.dtype(dtype)
    if xp is not np:
        return xp.full(count, value, dtype=dtype)
    raw = np.empty(count * dtype.itemsize + ALIGN_BYTES, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    arr = raw[start : start + count * dtype.itemsize].view(dtype)
    arr.fill(value)
    return arr


class Scratch:
    """Work arrays kept between calls so that timed loops never allocate.

    ``get(key, n, dtype)`` returns the same array for the same key each time once it
    exists with enough room; the first call (a warm-up) allocates.
    """

    __slots__ = ("_arrays", "_plans", "_views", "xp")

    def __init__(self, xp: ModuleType = np) -> None:
        self.xp = xp
        self._arrays: dict[str, Any] = {}
        self._views: dict[str, Any] = {}
        self._plans: dict[tuple, Any] = {}

    def get(self, key: str, n: int, dtype: Any, spare: float = 1.0) -> Any:
        """``n`` elements under ``key``; a new array holds ``spare``·n (room for sizes that
        vary from call to call, so that they settle after a few calls)."""
        arr = self._arrays.get(key)
        if arr is None or arr.size < n or arr.dtype != np.dtype(dtype):
            arr = self.xp.empty(max(int(n * spare), n, 1), dtype=dtype)
            self._arrays[key] = arr
        view = self._views.get(key)
        if view is None or view.size != n or view.base is not arr:
            # the same view object for the same request, so schedules cached by a
            # buffer's identity (the ring's, for one) are found again
            view = self._views[key] = arr[:n]
        return view

    def plan(self, key: tuple, build: Any) -> Any:
        """A per-buffer schedule (views, offsets) built once by ``build()`` and then reused.

        Only the most recent few are kept, so callers that pass a new view every call
        do not pile up schedules.
        """
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) >= MAX_PLANS:
                del self._plans[next(iter(self._plans))]
            found = self._plans[key] = build()
        return found


@dataclass(frozen=True)
class Backend:
    """Where buffers live: ``cpu`` (NumPy) or ``cuda`` (CuPy), and how MPI reaches them."""

    device: str
    xp: ModuleType = field(repr=False)
    cuda_aware: bool

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"

    def stage_through_host(self) -> bool:
        """True when device buffers must be copied to host memory around MPI calls."""
        return self.on_gpu and not self.cuda_aware

    def describe(self) -> str:
        if not self.on_gpu:
            return "cpu (numpy)"
        name = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)["name"]
        if isinstance(name, bytes):
            name = name.decode()
        mode = "cuda-aware MPI" if self.cuda_aware else "staged through host"
        return f"cuda ({name}, {mode})"


def get_backend(device: str) -> Backend:
    """The backend for ``device``; a UsageError when it cannot be had here."""
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return Backend("cpu", np, False)
    cupy = cupy_or_none()
    if cupy is None:
        raise UsageError("--device cuda requested but no usable GPU/CuPy was found")
    return Backend("cuda", cupy, cuda_aware_mpi())

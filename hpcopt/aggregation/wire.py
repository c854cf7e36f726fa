"""Payloads as bytes on the wire: packing, 8-byte aligned slots, variable-size gathers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch, sync
from hpcopt.encoders.base import Payload

__all__ = ["ALIGN", "Gathered", "as_bytes", "displacements", "gather_bytes", "pack", "padded"]

ALIGN = 8  # slots start on 8-byte boundaries so that every buffer view stays aligned
SPARE = 1.25  # room in byte buffers for payloads whose size depends on the data


def padded(n: Any) -> Any:
    """``n`` (an int or an array of them) rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def displacements(sizes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Start of each aligned slot for payloads of ``sizes`` bytes, back to back (into
    int64 ``out`` when given, without temporaries)."""
    out = np.empty(sizes.size, dtype=np.int64) if out is None else out
    if sizes.size:
        rest = out[1:]
        np.add(sizes[:-1], ALIGN - 1, out=rest)
        np.floor_divide(rest, ALIGN, out=rest)
        np.multiply(rest, ALIGN, out=rest)
        out[0] = 0
        np.cumsum(out, out=out)
    return out


def pack(payload: Payload, out: Any) -> Any:
    """Copy the payload's buffers one after another into uint8 ``out``; the filled part."""
    at = 0
    for b in payload.buffers:
        flat = b.reshape(-1).view(np.uint8)
        out[at : at + flat.size] = flat
        at += flat.size
    return out[:at]


def as_bytes(payload: Payload, scratch: Scratch, key: str = "own") -> Any:
    """The payload's buffers as one uint8 array: a view of a single contiguous buffer, else
    packed into a scratch array kept under ``key``."""
    if len(payload.buffers) == 1 and payload.buffers[0].flags.c_contiguous:
        return payload.buffers[0].reshape(-1).view(np.uint8)
    return pack(payload, scratch.get(key, payload.nbytes, np.uint8, SPARE))


class Gathered(NamedTuple):
    """Every rank's payload bytes: rank j's are ``recv[displs[j] : displs[j] + sizes[j]]``."""

    recv: Any
    displs: np.ndarray
    sizes: np.ndarray

    def slots(self) -> Iterator[Any]:
        """Each rank's bytes, in rank order."""
        for start, size in zip(self.displs.tolist(), self.sizes.tolist(), strict=True):
            yield self.recv[start : start + size]


def gather_bytes(comm: MPI.Comm, own: Any, scratch: Scratch) -> tuple[Gathered, int]:
    """Allgatherv of every rank's bytes; (what was gathered, bytes sent).

    Bytes sent count this rank's payload and its 8-byte size once per other rank.
    """
    p = comm.size
    sizes = scratch.get("sizes", p, np.int64)
    mine = scratch.get("size", 1, np.int64)
    mine[0] = own.size
    comm.Allgather(mine, sizes)
    displs = displacements(sizes, scratch.get("displs", p, np.int64))
    recv = scratch.get("gathered", int(displs[-1] + padded(int(sizes[-1]))), np.uint8, SPARE)
    sync(own)
    comm.Allgatherv([own, MPI.BYTE], [recv, (sizes, displs), MPI.BYTE])
    return Gathered(recv, displs, sizes), (own.size + 8) * (p - 1)

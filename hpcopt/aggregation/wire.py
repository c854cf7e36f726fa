"""Payloads as bytes on the wire: packing, 8-byte aligned slots, variable-size gathers."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch, sync
from hpcopt.encoders.base import Payload

__all__ = ["ALIGN", "as_bytes", "displacements", "gather_bytes", "pack", "padded"]

ALIGN = 8  # slots start on 8-byte boundaries so that every buffer view stays aligned


def padded(n: Any) -> Any:
    """``n`` (an int or an array of them) rounded up to a multiple of :data:`ALIGN`."""
    return -(-n // ALIGN) * ALIGN


def displacements(sizes: np.ndarray) -> np.ndarray:
    """Start of each aligned slot for payloads of ``sizes`` bytes, back to back."""
    return np.concatenate([[0], np.cumsum(padded(sizes))[:-1]]).astype(np.int64)


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
    return pack(payload, scratch.get(key, payload.nbytes, np.uint8))


def gather_bytes(comm: MPI.Comm, own: Any, scratch: Scratch) -> tuple[Any, np.ndarray, int]:
    """Allgatherv of every rank's bytes; (received, [displacements; sizes], bytes sent).

    Bytes sent count this rank's payload and its 8-byte size once per other rank.
    """
    p = comm.size
    sizes = scratch.get("sizes", p, np.int64)
    mine = scratch.get("size", 1, np.int64)
    mine[0] = own.size
    comm.Allgather(mine, sizes)
    displs = displacements(sizes)
    recv = scratch.get("gathered", int(displs[-1] + padded(int(sizes[-1]))), np.uint8)
    sync(own)
    comm.Allgatherv([own, MPI.BYTE], [recv, (sizes, displs), MPI.BYTE])
    return recv, np.stack([displs, sizes]), (own.size + 8) * (p - 1)

"""Checks for SPMD tests: every rank asserts the same thing, so no rank is left waiting."""

from __future__ import annotations

from collections.abc import Iterator

from mpi4py import MPI

__all__ = ["assert_everywhere", "communicators"]


def assert_everywhere(comm: MPI.Comm, ok: bool, what: str) -> None:
    """Assert on every rank that ``ok`` held on every rank; the message names the ranks."""
    failed = [rank for rank, good in enumerate(comm.allgather(bool(ok))) if not good]
    assert not failed, f"{what} (failed on rank(s) {failed})"


def communicators() -> Iterator[tuple[str, MPI.Comm]]:
    """COMM_WORLD, COMM_SELF and a duplicate of COMM_WORLD (freed after use)."""
    yield "world", MPI.COMM_WORLD
    yield "self", MPI.COMM_SELF
    dup = MPI.COMM_WORLD.Dup()
    try:
        yield "dup", dup
    finally:
        dup.Free()

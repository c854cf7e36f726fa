"""``--resume FILE.h5.partial``: continue a killed sweep where its log stops.

Rank 0 reads the partial log and checks that it was made by the same kernel, rank count,
MPI library, tag and flags; every rank then skips the (case, size) pairs already logged.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mpi4py import MPI

from hpcopt.errors import UsageError
from hpcopt.log import read_log
from hpcopt.meta import mpi_summary

__all__ = ["Resumed", "comparable_flags", "load_resume"]

# Flags that may differ between the killed run and its continuation (with value: True).
FREE_FLAGS = {"-o": True, "--output": True, "--resume": True, "--timeout": True,
              "--overwrite": False, "-q": False, "--quiet": False}  # fmt: skip

Key = tuple[str, str, str, int]


@dataclass(frozen=True)
class Resumed:
    """What a partial log already holds: its path, measured (algo, encoder, dtype, size)
    pairs, their wrong-element total and record count."""

    path: Path
    done: frozenset[Key] = field(default_factory=frozenset)
    wrong: int = 0
    records: int = 0


def comparable_flags(argv: list[str]) -> list[str]:
    """The command-line flags that must match, without the program and the free flags."""
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in FREE_FLAGS:
            skip = FREE_FLAGS[name] and "=" not in arg
            continue
        kept.append(arg)
    return kept


def _read(path: Path, kernel: str, tag: str, ranks: int) -> Resumed:
    """Check the partial log against this run (UsageError naming the first difference)."""
    log = read_log(path)
    if not log.partial or not log.runs:
        raise UsageError(f"{path}: not the partial log of a killed run")
    meta = log.runs[-1].meta
    checks = (
        ("kernel", meta.get("kernel"), kernel),
        ("rank count", meta.get("ranks"), ranks),
        ("MPI library", meta.get("mpi_library_version"), mpi_summary()["mpi_library_version"]),
        ("tag", meta.get("tag"), tag),
        ("flags", comparable_flags(list(meta.get("argv", []))), comparable_flags(sys.argv)),
    )
    for what, then, now in checks:
        if then != now:
            raise UsageError(f"cannot resume {path}: not the same {what} (then {then}, now {now})")
    records = log.runs[-1].records
    done = frozenset(
        (str(r["algo"]), str(r["encoder"]), str(r.get("dtype")), int(r.get("size_bytes", -1)))
        for r in records
    )
    return Resumed(path, done, sum(int(r.get("wrong", 0)) for r in records), len(records))


def load_resume(comm: MPI.Comm, kernel: str, args: argparse.Namespace) -> Resumed | None:
    """Collective: what ``--resume`` continues, the same on every rank (None without it)."""
    if not args.resume:
        return None
    result: Resumed | str | None = None
    if comm.rank == 0:
        try:
            result = _read(Path(args.resume), kernel, args.tag, comm.size)
        except UsageError as exc:
            result = str(exc)
    result = comm.bcast(result, root=0)
    if isinstance(result, str):
        raise UsageError(result)
    return result

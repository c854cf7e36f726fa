"""What every importer shares: numbered source lines, one-line errors, the record builder.

An importer turns one source file into :class:`Section` objects, one per benchmark
table the file holds; each becomes one run of the hpcopt log. Records follow hpcopt's
conventions (docs/schema.md, "Imported records"): ``size_bytes`` is the per-rank message
as OSU and IMB count it, times are in seconds, ``algbw_GBps`` is the nccl-tests
whole-buffer size over the time, ``busbw_GBps`` that times the nccl-tests bus factor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcopt.errors import UsageError

__all__ = [
    "BUS_FACTORS",
    "MAX_RANKS",
    "REDUCTIONS",
    "ParseError",
    "Parsed",
    "Section",
    "Source",
    "build_record",
    "choose_ranks",
    "mpi_dtype",
    "read_source",
    "whole_buffer_bytes",
]

INT64_MAX = 2**63 - 1
MAX_RANKS = 1 << 31
_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# nccl-tests bus factors (doc/PERFORMANCE.md of nccl-tests; gather/scatter as its sources).
BUS_FACTORS: dict[str, Callable[[int], float]] = {
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "allgather": lambda p: (p - 1) / p,
    "alltoall": lambda p: (p - 1) / p,
    "gather": lambda p: (p - 1) / p,
    "scatter": lambda p: (p - 1) / p,
    "bcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
    "p2p": lambda p: 1.0,
}
# Kernels whose nccl-tests size is the whole buffer of all ranks: size_bytes times ranks.
_TIMES_RANKS = ("allgather", "alltoall", "gather", "scatter")
REDUCTIONS = ("allreduce", "reduce", "reduce_scatter")

_MPI_DTYPES = {
    "MPI_CHAR": "int8",
    "MPI_SIGNED_CHAR": "int8",
    "MPI_UNSIGNED_CHAR": "uint8",
    "MPI_BYTE": "uint8",
    "MPI_SHORT": "int16",
    "MPI_INT": "int32",
    "MPI_LONG": "int64",
    "MPI_LONG_LONG": "int64",
    "MPI_LONG_LONG_INT": "int64",
    "MPI_FLOAT": "float32",
    "MPI_DOUBLE": "float64",
}


class ParseError(UsageError):
    """Malformed input: one line naming the file and the line."""


@dataclass
class Source:
    """A text file split into lines (numbered from 1), as named on the command line."""

    name: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def error(self, lineno: int | None, message: str) -> ParseError:
        """A ParseError pointing at ``lineno`` (None: the file as a whole)."""
        where = f"{self.name}:{lineno}" if lineno else self.name
        return ParseError(f"{where}: {message}")

    def count(self, lineno: int, token: str, what: str) -> int:
        """A whole number ≥ 0 that fits in 64 bits, or a ParseError."""
        if not _INT.fullmatch(token):
            raise self.error(lineno, f"{what} {_show(token)} is not a whole number")
        value = int(token)
        if value > INT64_MAX:
            raise self.error(lineno, f"{what} {_show(token)} is too large")
        return value

    def number(self, lineno: int, token: str, what: str) -> float:
        """A finite number ≥ 0, or a ParseError."""
        if not _FLOAT.fullmatch(token):
            raise self.error(lineno, f"{what} {_show(token)} is not a number")
        value = float(token)
        if not math.isfinite(value):
            raise self.error(lineno, f"{what} {_show(token)} is too large")
        return value


def _show(token: str) -> str:
    """A token quoted for a message, cut short and made printable."""
    text = token if len(token) <= 24 else token[:21] + "..."
    return ascii(text)


def read_source(path: str | Path) -> Source:
    """Read a text file; UsageError for unreadable files, ParseError for binary data."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{name}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ParseError(f"{name}:{line}: binary data, not a benchmark's text output")
    text = data.decode("utf-8", errors="replace")
    return Source(name, [line.removesuffix("\r") for line in text.split("\n")])


def mpi_dtype(name: str) -> str:
    """hpcopt's dtype name for an MPI datatype name (``MPI_FLOAT`` → ``float32``)."""
    key = name.strip().rstrip(".").strip().upper()
    return _MPI_DTYPES.get(key, key.lower())


@dataclass
class Section:
    """One benchmark table of a source: one run of the log, with what the source states."""

    tool: str
    tool_version: str | None
    benchmark: str
    kernel: str
    file: str
    line: int | None
    ranks: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    device: str | None = None


@dataclass
class Parsed:
    """What a parser found in one source: its sections, and the benchmarks it passed over."""

    sections: list[Section]
    skipped: list[str] = field(default_factory=list)


def choose_ranks(
    source: Source, lineno: int | None, stated: int | None, given: int | None
) -> int | None:
    """The rank count the source states, else ``given`` (--ranks); ParseError if they differ."""
    if stated is not None and not 1 <= stated <= MAX_RANKS:
        raise source.error(lineno, f"a count of {stated} processes is out of range")
    if stated is not None and given is not None and stated != given:
        raise source.error(lineno, f"the source states {stated} processes, --ranks says {given}")
    return stated if stated is not None else given


def whole_buffer_bytes(kernel: str, size_bytes: int, ranks: int | None) -> int | None:
    """The nccl-tests size S of a per-rank ``size_bytes`` (None when ranks are unknown)."""
    if kernel not in _TIMES_RANKS:
        return size_bytes
    return size_bytes * ranks if ranks else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def build_record(
    section: Section,
    *,
    algo: str,
    dtype: str | None,
    size_bytes: int,
    line: int | None,
    t_avg_us: float | None = None,
    t_min_us: float | None = None,
    t_max_us: float | None = None,
    algbw_GBps: float | None = None,
    busbw_GBps: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One hpcopt record; algbw and busbw are computed (and named in ``computed``) if absent."""
    kernel, ranks = section.kernel, section.ranks
    rec: dict[str, Any] = {
        "kernel": kernel,
        "algo": algo,
        "encoder": "none",
        "dtype": dtype,
        "size_bytes": size_bytes,
        "ranks": ranks,
    }
    for key, us in (("t_avg_s", t_avg_us), ("t_min_s", t_min_us), ("t_max_s", t_max_us)):
        rec[key] = us / 1e6 if us is not None else None
    computed = []
    whole = whole_buffer_bytes(kernel, size_bytes, ranks)
    if algbw_GBps is None and t_avg_us and whole is not None and kernel in BUS_FACTORS:
        algbw_GBps = _finite(whole / t_avg_us / 1e3)
        computed += ["algbw_GBps"] if algbw_GBps is not None else []
    factor = BUS_FACTORS.get(kernel)
    p = ranks if ranks else (2 if kernel == "p2p" else None)
    if busbw_GBps is None and algbw_GBps is not None and factor is not None and p:
        busbw_GBps = _finite(algbw_GBps * factor(p))
        computed += ["busbw_GBps"] if busbw_GBps is not None else []
    rec.update(algbw_GBps=algbw_GBps, busbw_GBps=busbw_GBps)
    rec["computed"] = ",".join(computed) or None
    rec.update(extra)
    rec.update(
        source_tool=section.tool,
        source_tool_version=section.tool_version,
        source_file=section.file,
        source_line=line,
    )
    return {k: v for k, v in rec.items() if v is not None}

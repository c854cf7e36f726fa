"""Intel MPI Benchmarks (IMB-MPI1): the text output, every benchmark and process count.

The preamble states the version, date, machine, MPI version, calling sequence and
datatypes (``# Key : value``). Each ``# Benchmarking NAME`` with ``# #processes = N``
is followed by a column heading (``#bytes #repetitions t_min[usec] ...``) and rows;
each such table is a section.
"""

from __future__ import annotations

import re
from typing import Any

from hpcopt.importers.common import (
    REDUCTIONS,
    Parsed,
    Section,
    Source,
    build_record,
    choose_ranks,
    mpi_dtype,
)

__all__ = ["BENCHMARKS", "looks_like_imb", "parse_imb"]

_VERSION = re.compile(
    r"^#\s*Intel\s*\(R\)\s*MPI Benchmarks\s+(?P<version>.+?),\s*(?P<part>\S+)\s+part\s*$"
)
_KEY_VALUE = re.compile(r"^#\s*(?P<key>[A-Za-z][\w ()]*?)\s*:\s*(?P<value>.*?)\s*$")
_BENCH = re.compile(r"^#\s*Benchmarking\s+(?P<multi>Multi-)?(?P<name>\S+)\s*$")
_PROCS = re.compile(r"^#\s*#processes\s*=\s*(\d+)")
_IDLE = re.compile(r"^#\s*\(\s*(\d+)\s+additional process(?:es)?\s+waiting in MPI_Barrier\s*\)")
_FINALIZE = re.compile(r"^#\s*All processes entering MPI_Finalize")
_CALLING = re.compile(r"^#\s*Calling sequence was:\s*$")
_FAILED_ROW = ("out-of-mem.", "int-overflow.", "time-out.")
_CHECK_LINE = re.compile(r"^(?:!!!.*|\S+\s+:\s+(?:Successful|FAILED.*)|Attention, msg size .*)$")

# IMB benchmark name → (kernel, algo).
BENCHMARKS = {
    "PingPong": ("p2p", "pingpong"),
    "PingPing": ("p2p", "pingping"),
    "Sendrecv": ("p2p", "sendrecv"),
    "Exchange": ("p2p", "exchange"),
    "Allreduce": ("allreduce", "native-oop"),
    "Allgather": ("allgather", "native-oop"),
    "Reduce_scatter": ("reduce_scatter", "native-oop"),
    "Reduce_scatter_block": ("reduce_scatter", "native-oop"),
    "Reduce": ("reduce", "native-oop"),
    "Bcast": ("bcast", "native"),
    "Alltoall": ("alltoall", "native-oop"),
    "Gather": ("gather", "native-oop"),
    "Scatter": ("scatter", "native-oop"),
    "Barrier": ("barrier", "native"),
}
_COLUMNS = {
    "#bytes": "size",
    "#repetitions": "iters",
    "t[usec]": "avg_us",
    "t_avg[usec]": "avg_us",
    "t_min[usec]": "min_us",
    "t_max[usec]": "max_us",
    "Mbytes/sec": "MBps",
    "defects": "defects",
}


def looks_like_imb(line: str) -> bool:
    """Whether ``line`` is IMB's version banner or a ``# Benchmarking`` line."""
    return bool(_VERSION.match(line) or _BENCH.match(line))


class _State:
    """What the parser knows at a given line."""

    def __init__(self, given_ranks: int | None) -> None:
        self.given_ranks = given_ranks
        self.version: str | None = None
        self.preamble: dict[str, Any] = {}
        self.bench: str | None = None
        self.bench_facts: dict[str, Any] = {}
        self.ranks: int | None = None
        self.section: Section | None = None
        self.keys: list[str] = []
        self.calling: list[str] | None = None


def _columns(source: Source, lineno: int, line: str) -> list[str]:
    keys = []
    for token in line.split():
        if token not in _COLUMNS:
            raise source.error(lineno, f"unknown IMB column {token!r}")
        keys.append(_COLUMNS[token])
    if "avg_us" not in keys:
        raise source.error(lineno, "IMB columns without a time")
    return keys


def _dtype(state: _State, kernel: str) -> tuple[str | None, str | None]:
    """(hpcopt dtype, the datatype the preamble states)."""
    if kernel == "barrier":
        return None, None
    if kernel in REDUCTIONS:
        stated = state.preamble.get("MPI_Datatype for reductions")
        return mpi_dtype(stated or "MPI_FLOAT"), stated
    return "uint8", state.preamble.get("MPI_Datatype")


def _record(source: Source, lineno: int, state: _State, line: str) -> dict[str, Any] | None:
    """The row's record; None for a size IMB reports as not measured."""
    section, tokens = state.section, line.split()
    assert section is not None and state.bench is not None
    if len(tokens) > 1 and tokens[1].startswith(_FAILED_ROW):
        section.facts.setdefault("not_measured", []).append(f"line {lineno}: {line.strip()}")
        return None
    if len(tokens) != len(state.keys):
        raise source.error(lineno, f"{len(tokens)} values for {len(state.keys)} IMB columns")
    values = dict(zip(state.keys, tokens, strict=True))
    kernel, algo = BENCHMARKS[state.bench]
    dtype, source_dtype = _dtype(state, kernel)
    extra: dict[str, Any] = {"source_dtype": source_dtype}
    if kernel in REDUCTIONS:
        extra["op"] = str(state.preamble.get("MPI_Op", "MPI_SUM")).removeprefix("MPI_").lower()
    size = source.count(lineno, values["size"], "size") if "size" in values else 0
    times = {
        k: source.number(lineno, values[k], k)
        for k in ("avg_us", "min_us", "max_us")
        if k in values
    }
    extra["iters"] = source.count(lineno, values["iters"], "repetitions")
    if "MBps" in values:
        extra["source_MBps"] = source.number(lineno, values["MBps"], "Mbytes/sec")
    if "defects" in values:
        defects = source.number(lineno, values["defects"], "defects")
        extra.update(checked=True, defects=defects, wrong=int(defects > 0))
    return build_record(
        section,
        algo=algo,
        dtype=dtype,
        size_bytes=size,
        line=lineno,
        t_avg_us=times["avg_us"],
        t_min_us=times.get("min_us"),
        t_max_us=times.get("max_us"),
        **extra,
    )


def _heading(source: Source, lineno: int, line: str, state: _State, parsed: Parsed) -> None:
    """A column heading starts a section of the current benchmark."""
    assert state.bench is not None
    state.keys = _columns(source, lineno, line)
    kernel, _ = BENCHMARKS[state.bench]
    facts = dict(state.preamble, **state.bench_facts)
    ranks = choose_ranks(source, lineno, state.ranks, state.given_ranks)
    state.section = Section(
        "imb", state.version, state.bench, kernel, source.name, lineno, ranks, facts
    )
    parsed.sections.append(state.section)


def _comment(source: Source, lineno: int, line: str, state: _State, parsed: Parsed) -> None:
    """A ``#`` line: banner, preamble fact, benchmark name, process count or calling sequence."""
    m = _VERSION.match(line)
    if m:
        state.version = m["version"]
        state.preamble["part"] = m["part"]
        return
    m = _BENCH.match(line)
    if m:
        name = ("Multi-" if m["multi"] else "") + m["name"]
        state.section, state.ranks, state.bench_facts = None, None, {}
        state.bench = name if name in BENCHMARKS else None
        if state.bench is None:
            parsed.skipped.append(f"IMB {name}")
        return
    m = _PROCS.match(line)
    if m:
        state.ranks = source.count(lineno, m[1], "#processes")
        return
    m = _IDLE.match(line)
    if m:
        state.bench_facts["idle_processes"] = source.count(lineno, m[1], "processes")
        return
    if _FINALIZE.match(line):
        state.bench, state.section = None, None
        return
    if _CALLING.match(line):
        state.calling = []
        return
    if state.calling is not None:
        state.calling.append(line.lstrip("#").strip())
        return
    m = _KEY_VALUE.match(line)
    if m and m["value"]:
        target = state.preamble if state.bench is None else state.bench_facts
        target[m["key"]] = m["value"]


def parse_imb(source: Source, ranks: int | None = None) -> Parsed:
    """Every table of every known benchmark in an IMB-MPI1 output."""
    parsed, state = Parsed([]), _State(ranks)
    seen_imb = False
    for lineno, raw in enumerate(source.lines, 1):
        line = raw.strip()
        if not line:
            if state.calling:
                state.preamble["command"] = " ".join(state.calling)
                state.calling = None
            state.section = None
            continue
        if seen_imb and "#repetitions" in line.split():
            if state.bench is not None:
                _heading(source, lineno, line, state, parsed)
            continue
        if line.startswith("#"):
            seen_imb = seen_imb or looks_like_imb(line)
            if seen_imb:
                _comment(source, lineno, line, state, parsed)
            continue
        if not seen_imb:
            continue  # launcher output before IMB's banner
        if _CHECK_LINE.match(line):
            target = state.section.facts if state.section else state.preamble
            target.setdefault("check", []).append(line)
            continue
        if state.section is None:
            if state.bench is None:
                continue  # rows of a benchmark this importer does not map
            raise source.error(lineno, "a line that is no IMB result outside any table")
        if not line[0].isdigit():
            raise source.error(lineno, "not an IMB result row")
        rec = _record(source, lineno, state, line)
        if rec is not None:
            state.section.records.append(rec)
    return parsed

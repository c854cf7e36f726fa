"""OSU Micro-Benchmarks: the text output of the C benchmarks (v5-v7) and of OMB-Py.

A title line (``# OSU MPI Allreduce Latency Test v7.4``, ``# OMB-Py MPI Latency Test``)
starts a benchmark; ``# Datatype: MPI_FLOAT.`` (v7.1 on) sets the datatype; a column
heading (``# Size  Avg Latency(us) ...``) starts a table of rows. Each table is a section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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

__all__ = ["BENCHMARKS", "looks_like_osu", "parse_osu"]

_TITLE = re.compile(
    r"^#\s*OSU MPI(?:-(?P<accel>[A-Z]+))?\s+(?P<name>.+?)\s+Test(?:\s+v(?P<version>\S+))?\s*$"
)
_PY_TITLE = re.compile(r"^#\s*OMB(?:-Py| Python) MPI\s+(?P<name>.+?)\s+Test\s*$")
_DATATYPE = re.compile(r"^#\s*Datatype:\s*(\S+?)\.?\s*$")
_PAIRS = re.compile(r"^#\s*\[\s*pairs:\s*(\d+)\s*\]\s*\[\s*window size:\s*([^\]\s]+)\s*\]")
_HEADING = re.compile(r"Latency|Bandwidth|MB/s")
_VALIDATION_ERROR = "DATA VALIDATION ERROR"

# Benchmark name (lower case, " latency" dropped for collectives) → (kernel, algo).
BENCHMARKS = {
    "latency": ("p2p", "pingpong"),
    "bandwidth": ("p2p", "stream"),
    "bi-directional bandwidth": ("p2p", "bibw"),
    "multiple bandwidth / message rate": ("p2p", "stream"),
    "multi latency": ("p2p", "multi"),
    "allreduce": ("allreduce", "native-oop"),
    "allgather": ("allgather", "native-oop"),
    "reduce_scatter": ("reduce_scatter", "native-oop"),
    "reduce_scatter_block": ("reduce_scatter", "native-oop"),
    "reduce": ("reduce", "native-oop"),
    "broadcast": ("bcast", "native"),
    "bcast": ("bcast", "native"),
    "all-to-all personalized exchange": ("alltoall", "native-oop"),
    "alltoall": ("alltoall", "native-oop"),
    "gather": ("gather", "native-oop"),
    "scatter": ("scatter", "native-oop"),
    "barrier": ("barrier", "native"),
}
# Benchmarks that need exactly two processes.
_TWO_RANKS = ("latency", "bandwidth", "bi-directional bandwidth")

# Column headings, tried in this order at each position of a heading line.
_COLUMNS = (
    ("size", re.compile(r"Size(?:\s*\(B\))?")),
    ("avg_us", re.compile(r"Avg Latency\s*\(us\)")),
    ("min_us", re.compile(r"Min Latency\s*\(us\)")),
    ("max_us", re.compile(r"Max Latency\s*\(us\)")),
    ("iters", re.compile(r"Iterations")),
    ("avg_us", re.compile(r"Latency\s*\(us\)")),
    ("bw_MBps", re.compile(r"Bandwidth\s*\(MB/s\)")),
    ("rate", re.compile(r"Messages/s")),
    ("bw_MBps", re.compile(r"MB/s")),
    ("validation", re.compile(r"Validation")),
    ("tail", re.compile(r"P(\d{1,3}) Tail (Lat\(us\)|BW\(MB/s\))")),
    ("transmit", re.compile(r"Transmit Size")),
)


def looks_like_osu(line: str) -> bool:
    """Whether ``line`` is an OSU or OMB-Py title line."""
    return bool(_TITLE.match(line) or _PY_TITLE.match(line))


@dataclass
class _Benchmark:
    """The benchmark a title line announced, and what the lines after it state."""

    tool: str
    version: str | None
    name: str
    key: str
    accel: str | None
    datatype: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.key in BENCHMARKS


def _key(name: str) -> str:
    key = name.lower().strip()
    if key not in BENCHMARKS and key.endswith(" latency"):
        key = key.removesuffix(" latency")
    return key


def _title(line: str) -> _Benchmark | None:
    m = _TITLE.match(line)
    if m:
        name = m["name"]
        return _Benchmark("osu", m["version"], name, _key(name), m["accel"])
    m = _PY_TITLE.match(line)
    if m:
        return _Benchmark("omb-py", None, m["name"], _key(m["name"]), None)
    return None


def _columns(source: Source, lineno: int, heading: str) -> list[str]:
    """Column keys of a heading line; tail columns become ``tail:N:lat`` / ``tail:N:bw``."""
    text, pos, keys = heading.lstrip("#"), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        for key, pattern in _COLUMNS:
            m = pattern.match(text, pos)
            if m:
                if key == "tail":
                    key = f"tail:{m[1]}:{'lat' if m[2].startswith('Lat') else 'bw'}"
                keys.append(key)
                pos = m.end()
                break
        else:
            raise source.error(lineno, f"unknown column heading at {text[pos : pos + 20]!r}")
    if not {"avg_us", "bw_MBps"} & set(keys):
        raise source.error(lineno, "column headings name no latency or bandwidth")
    return keys


def _section(source: Source, bench: _Benchmark, lineno: int, given: int | None) -> Section:
    kernel, _ = BENCHMARKS[bench.key]
    stated = None
    if bench.key in _TWO_RANKS:
        stated = 2
    elif "pairs" in bench.facts:
        stated = 2 * int(bench.facts["pairs"])
    ranks = choose_ranks(source, lineno, stated, given)
    facts = dict(bench.facts, title=bench.name)
    if bench.datatype:
        facts["datatype"] = bench.datatype
    device = bench.accel.lower() if bench.accel else None
    return Section(
        bench.tool,
        bench.version,
        bench.name,
        kernel,
        source.name,
        lineno,
        ranks,
        facts,
        device=device,
    )


def _dtype(bench: _Benchmark, kernel: str) -> tuple[str | None, str | None]:
    """(hpcopt dtype, the source's datatype name when it states one)."""
    if kernel == "barrier":
        return None, None
    if kernel not in REDUCTIONS:
        return "uint8", bench.datatype
    if bench.datatype:
        return mpi_dtype(bench.datatype), bench.datatype
    return "float32", None  # before v7.1 (and in OMB-Py) reductions use MPI_FLOAT


def _record(
    source: Source, lineno: int, section: Section, bench: _Benchmark, keys: list[str], line: str
) -> dict[str, Any]:
    tokens = line.split()
    if len(tokens) != len(keys):
        raise source.error(lineno, f"{len(tokens)} values where the headings name {len(keys)}")
    values = dict(zip(keys, tokens, strict=True))
    kernel, algo = BENCHMARKS[bench.key]
    dtype, source_dtype = _dtype(bench, kernel)
    extra: dict[str, Any] = {"source_dtype": source_dtype}
    if kernel in REDUCTIONS:
        extra["op"] = "sum"
    size = source.count(lineno, values["size"], "size") if "size" in values else 0
    times = {
        k: source.number(lineno, values[k], k)
        for k in ("avg_us", "min_us", "max_us")
        if k in values
    }
    if "iters" in values:
        extra["iters"] = source.count(lineno, values["iters"], "iterations")
    algbw = None
    if "bw_MBps" in values:
        algbw = source.number(lineno, values["bw_MBps"], "bandwidth") / 1e3
    if "rate" in values:
        extra["msg_rate_per_s"] = source.number(lineno, values["rate"], "message rate")
    if "validation" in values:
        verdict = values["validation"]
        if verdict not in ("Pass", "Fail"):
            raise source.error(lineno, f"validation {verdict!r} is neither Pass nor Fail")
        extra.update(checked=True, validation=verdict, wrong=int(verdict == "Fail"))
    if "transmit" in values:
        extra["transmit_bytes"] = source.count(lineno, values["transmit"], "transmit size")
    for key in keys:
        if key.startswith("tail:"):
            _, pct, kind = key.split(":")
            value = source.number(lineno, values[key], f"P{pct} tail")
            if kind == "lat":
                extra[f"tail_p{pct}_s"] = value / 1e6
            else:
                extra[f"tail_p{pct}_GBps"] = value / 1e3
    return build_record(
        section,
        algo=algo,
        dtype=dtype,
        size_bytes=size,
        line=lineno,
        t_avg_us=times.get("avg_us"),
        t_min_us=times.get("min_us"),
        t_max_us=times.get("max_us"),
        algbw_GBps=algbw,
        **extra,
    )


def _comment(source: Source, lineno: int, bench: _Benchmark, line: str) -> None:
    """A ``#`` line that is no title, datatype or heading: kept as a fact of the benchmark."""
    m = _PAIRS.match(line)
    if m:
        bench.facts.update(pairs=source.count(lineno, m[1], "pairs"), window_size=m[2])
        return
    text = line.lstrip("#").strip()
    if text:
        bench.facts.setdefault("notes", []).append(text)


def parse_osu(source: Source, ranks: int | None = None) -> Parsed:
    """Every table of every known OSU / OMB-Py benchmark; ``ranks``: the unstated rank count."""
    parsed = Parsed([])
    bench: _Benchmark | None = None
    section: Section | None = None
    keys: list[str] = []
    for lineno, raw in enumerate(source.lines, 1):
        line = raw.strip()
        if not line:
            continue
        title = _title(line)
        if title is not None:
            bench, section = title, None
            if not bench.known:
                parsed.skipped.append(f"OSU {bench.name}")
            continue
        if bench is None or not bench.known:
            continue  # text before any OSU title, or a benchmark this importer does not map
        if line.startswith("#"):
            m = _DATATYPE.match(line)
            if m:
                bench.datatype, section = m[1], None
            elif _HEADING.search(line):
                keys = _columns(source, lineno, line)
                section = _section(source, bench, lineno, ranks)
                parsed.sections.append(section)
            else:
                _comment(source, lineno, bench, line)
            continue
        if line.startswith(_VALIDATION_ERROR) and section is not None:
            section.facts["validation_error"] = line
            continue
        if section is None:
            raise source.error(lineno, "a line that is no OSU result before any column heading")
        if not (line[0].isdigit() or line[0] == "."):
            raise source.error(lineno, "not an OSU result row")
        section.records.append(_record(source, lineno, section, bench, keys, line))
    return parsed

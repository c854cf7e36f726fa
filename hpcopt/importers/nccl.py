"""nccl-tests: the text table (out-of-place and in-place columns), and what its JSON shares.

Each program run (``# Collective test starting: all_reduce_perf``) is a section; every
row gives two records, out of place (``native-oop``) and in place (``native``).
nccl-tests' ``size`` is the whole buffer of one rank; for allgather, alltoall, gather and
scatter it is ranks × the per-rank message, so it is divided by the rank count
(docs/schema.md) and kept as ``source_size_bytes``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from hpcopt.importers.common import Parsed, Section, Source, build_record, choose_ranks

__all__ = [
    "PROGRAMS",
    "looks_like_nccl",
    "nccl_version",
    "parse_nccl_text",
    "program_of",
    "row_records",
]

PROGRAMS = {
    "all_reduce": "allreduce",
    "all_gather": "allgather",
    "reduce_scatter": "reduce_scatter",
    "reduce": "reduce",
    "broadcast": "bcast",
    "alltoall": "alltoall",
    "gather": "gather",
    "scatter": "scatter",
}
_DTYPES = {
    "half": "float16",
    "float": "float32",
    "double": "float64",
    "char": "int8",
    "int": "int32",
}
_PER_RANK = ("allgather", "alltoall", "gather", "scatter")
_VERSION = re.compile(
    r"^#\s*nccl-tests version\s+(?P<v>\S+)(?:\s+nccl-headers=(?P<h>\d+))?"
    r"(?:\s+nccl-library=(?P<lib>\d+))?"
)
_STARTING = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
_CONCLUDED = re.compile(r"^#\s*Collective test concluded:")
_CONFIG = re.compile(r"^#\s*nThread\s+\d+\s+nGpus\s+\d+")
_DEVICE = re.compile(
    r"^#\s+Rank\s+(?P<rank>\d+)(?:\s+Group\s+\d+)?\s+Pid\s+\d+\s+on\s+(?P<host>\S+)\s+"
    r"device\s+(?P<dev>\d+)\s+\[(?P<bus>[^\]]*)\]\s*(?P<name>.*?)\s*$"
)
_FOOTER = re.compile(
    r"^#\s*(?P<key>Out of bounds values|Avg bus bandwidth|GPU memory usage)\s*:"
    r"\s*(?P<value>.*?)\s*$"
)
_NCCL_LOG = re.compile(r"^\S+:\d+:\d+ \[\d+\] NCCL (?:INFO|WARN|TRACE|ABORT)\b")
_NCCL_VERSION = re.compile(r"^NCCL version\s+(\S+)")
_TIME_COLUMNS = ("time", "cputime")
_LAYOUT_LINES = ("out-of-place", "Using devices")


def looks_like_nccl(line: str) -> bool:
    """Whether ``line`` is one nccl-tests prints before its table."""
    return bool(_VERSION.match(line) or _STARTING.match(line) or _CONFIG.match(line))


def nccl_version(code: int) -> str:
    """NCCL's version code as text: 22703 → 2.27.3 (before 2.9: 2803 → 2.8.3)."""
    if code >= 20900:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def program_of(name: str) -> str | None:
    """The nccl-tests program stem of a path or program name (``all_reduce``), or None."""
    base = os.path.basename(name)
    m = re.match(
        r"(all_reduce|all_gather|reduce_scatter|reduce|broadcast|alltoall|gather|"
        r"scatter|sendrecv|hypercube|alltoallv)_perf",
        base,
    )
    return m[1] if m else None


def _size_bytes(section: Section, size: int) -> int | None:
    if section.kernel not in _PER_RANK:
        return size
    return size // section.ranks if section.ranks else None


def row_records(section: Section, row: dict[str, Any], line: int | None) -> list[dict[str, Any]]:
    """The out-of-place and in-place records of one row (either may be absent)."""
    size = row["size"]
    size_bytes = _size_bytes(section, size)
    if size_bytes is None:
        raise ValueError("the rank count is not stated; pass --ranks")
    dtype = _DTYPES.get(row["type"], row["type"])
    extra: dict[str, Any] = {"source_size_bytes": size, "source_dtype": row["type"]}
    if row.get("count") is not None:
        extra["source_count"] = row["count"]
    if row.get("redop") not in (None, "none"):
        extra["op"] = row["redop"]
    if row.get("root") is not None and row["root"] >= 0:
        extra["root"] = row["root"]
    extra.update(row.get("common", {}))
    out = []
    for algo, group in (("native-oop", row.get("oop")), ("native", row.get("ip"))):
        if group is None:
            continue
        fields = dict(extra, **group)
        time_us = fields.pop("time_us", None)
        out.append(
            build_record(
                section,
                algo=algo,
                dtype=dtype,
                size_bytes=size_bytes,
                line=line,
                t_avg_us=time_us,
                **fields,
            )
        )
    return out


class _Text:
    """Parser state for nccl-tests' text output: the current program run and its table."""

    def __init__(self, source: Source, ranks: int | None) -> None:
        self.source, self.ranks = source, ranks
        self.parsed = Parsed([])
        self.block: dict[str, Any] = {}
        self.version: str | None = None
        self.program: str | None = None
        self.devices: list[dict[str, Any]] = []
        self.names: list[str] | None = None
        self.section: Section | None = None

    def start_block(self, keep_version: bool) -> None:
        """A new program run: forget the previous run's facts (not the version line)."""
        if self.section is None and not self.devices:
            return
        kept = {k: v for k, v in self.block.items() if k.startswith("nccl_")}
        self.block = kept if keep_version else {}
        self.version = self.version if keep_version else None
        self.program, self.devices, self.names, self.section = None, [], None, None

    def new_section(self, lineno: int, names: list[str]) -> None:
        program = self.program or program_of(self.source.name)
        if program is None:
            raise self.source.error(
                lineno,
                "cannot tell which nccl-tests program wrote this "
                "table (no 'Collective test starting' line); name the "
                "file after it, e.g. all_reduce_perf.txt",
            )
        facts = dict(self.block)
        stated = len({d["rank"] for d in self.devices}) or None
        if self.devices:
            facts["devices"] = self.devices
            facts["hosts"] = [d["host"] for d in self.devices]
        kernel = PROGRAMS.get(program, "")
        ranks = choose_ranks(self.source, lineno, stated, self.ranks)
        self.names = names
        self.section = Section(
            "nccl-tests",
            self.version,
            f"{program}_perf",
            kernel,
            self.source.name,
            lineno,
            ranks,
            facts,
            device="cuda",
        )
        if kernel:
            self.parsed.sections.append(self.section)
        else:
            self.parsed.skipped.append(f"nccl-tests {program}_perf")

    def comment(self, lineno: int, line: str) -> None:
        if line.lstrip("#").strip().startswith("(B)"):
            return  # the units line under the headings
        self.names = None  # any other '#' line ends a table
        m = _VERSION.match(line)
        if m:
            self.start_block(keep_version=False)
            self.version = m["v"]
            if m["h"]:
                self.block["nccl_headers"] = nccl_version(int(m["h"]))
            if m["lib"]:
                self.block["nccl_version"] = nccl_version(int(m["lib"]))
            return
        m = _STARTING.match(line)
        if m:
            self.start_block(keep_version=True)
            self.program = program_of(m[1]) or m[1]
            return
        if _CONFIG.match(line):
            self.block["options"] = line.lstrip("#").strip()
            self.block.update(_config(line))
            return
        m = _DEVICE.match(line)
        if m:
            if self.section is not None:
                self.start_block(keep_version=True)
            self.devices.append(
                {
                    "rank": int(m["rank"]),
                    "host": m["host"],
                    "device": int(m["dev"]),
                    "bus": m["bus"],
                    "name": m["name"],
                }
            )
            return
        m = _FOOTER.match(line)
        if m and self.section is not None:
            self.section.facts[m["key"]] = m["value"]
            return
        tokens = line.lstrip("#").split()
        if "size" in tokens and set(_TIME_COLUMNS) & set(tokens):
            self.new_section(lineno, tokens)
            return
        text = line.lstrip("#").strip()
        if text and not _CONCLUDED.match(line) and not text.startswith(_LAYOUT_LINES):
            target = self.section.facts if self.section is not None else self.block
            target.setdefault("notes", []).append(text)

    def row(self, lineno: int, line: str) -> None:
        assert self.names is not None and self.section is not None
        tokens = line.split()
        if "timestamp" in self.names and len(tokens) >= 2:
            tokens = [*tokens[:-2], " ".join(tokens[-2:])]
        if len(tokens) != len(self.names):
            raise self.source.error(
                lineno, f"{len(tokens)} values where the headings name {len(self.names)}"
            )
        row = _text_row(self.source, lineno, self.names, tokens)
        stated = {k: self.section.facts[k] for k in ("iters", "warmup") if k in self.section.facts}
        row.setdefault("common", {}).update(stated)
        if not self.section.kernel:
            return  # a program this importer does not map
        try:
            self.section.records += row_records(self.section, row, lineno)
        except ValueError as exc:
            raise self.source.error(lineno, str(exc)) from None


def _config(line: str) -> dict[str, Any]:
    """Iteration counts stated by the ``# nThread ... iters: 20 ...`` line."""
    out = {}
    for key, name in (("warmup iters", "warmup"), ("agg iters", "agg_iters")):
        m = re.search(rf"{key}:\s*(\d+)", line)
        if m:
            out[name] = int(m[1])
    m = re.search(r"(?<!warmup )(?<!agg )iters:\s*(\d+)", line)
    if m:
        out["iters"] = int(m[1])
    return out


def _group(source: Source, lineno: int, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """One out-of-place or in-place column group, (heading, value) pairs, as record fields."""
    out: dict[str, Any] = {}
    for name, token in pairs:
        if name in _TIME_COLUMNS:
            value = source.number(lineno, token, name)
            out["time_us" if name == "time" else "cpu_time_s"] = (
                value if name == "time" else value / 1e6
            )
        elif name in ("algbw", "busbw"):
            bandwidth = _bandwidth(token)
            if bandwidth is not None:
                out[f"{name}_GBps"] = bandwidth
        elif name == "#wrong":
            if token != "N/A":
                out.update(wrong=source.count(lineno, token, "#wrong"), checked=True)
        elif name == "error":
            out["max_error"] = source.number(lineno, token, "error")
        elif name in ("i_min", "i_max", "i_p99"):
            key = "t_p99_s" if name == "i_p99" else f"iter_{name[2:]}_s"
            out[key] = source.number(lineno, token, name) / 1e6
        elif name == "i_cv%":
            out["iter_cv_pct"] = source.number(lineno, token, name)
    return out


def _bandwidth(token: str) -> float | None:
    """A stated bandwidth; None for one nccl-tests could not compute (inf, nan)."""
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _text_row(source: Source, lineno: int, names: list[str], tokens: list[str]) -> dict[str, Any]:
    starts = [i for i, n in enumerate(names) if n in _TIME_COLUMNS]
    if not starts or "size" not in names or "type" not in names:
        raise source.error(lineno, "nccl-tests headings without size, type and time")
    values = dict(zip(names[: starts[0]], tokens[: starts[0]], strict=True))
    row: dict[str, Any] = {
        "size": source.count(lineno, values["size"], "size"),
        "type": values["type"],
        "redop": values.get("redop"),
    }
    if "count" in values:
        row["count"] = source.count(lineno, values["count"], "count")
    if "root" in values:
        root = values["root"]
        row["root"] = -1 if root == "-1" else source.count(lineno, root, "root")
    bounds = [*starts, len(names)]
    for key, lo, hi in zip(("oop", "ip"), bounds, bounds[1:], strict=False):
        pairs = [
            (n, t) for n, t in zip(names[lo:hi], tokens[lo:hi], strict=True) if n != "timestamp"
        ]
        row[key] = _group(source, lineno, pairs)
    if "timestamp" in names:
        row["common"] = {"timestamp": tokens[names.index("timestamp")]}
    return row


def parse_nccl_text(source: Source, ranks: int | None = None) -> Parsed:
    """nccl-tests' text output; ``ranks`` fills in a rank count the source omits."""
    state = _Text(source, ranks)
    seen = False
    for lineno, raw in enumerate(source.lines, 1):
        line = raw.strip()
        if not line or _NCCL_LOG.match(line):
            continue
        m = _NCCL_VERSION.match(line)
        if m:
            state.block["nccl_version_line"] = m[1]
            continue
        if line.startswith("#"):
            seen = seen or looks_like_nccl(line) or "out-of-place" in line
            if seen:
                state.comment(lineno, line)
            continue
        if state.names is None:
            continue  # outside a table: launcher or MPI messages
        if not line[0].isdigit():
            raise source.error(lineno, "not an nccl-tests result row")
        state.row(lineno, line)
    return state.parsed

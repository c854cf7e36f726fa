"""nccl-tests: the text table (out-of-place and in-place columns) and the JSON of ``-J``.

Each program run (``# Collective test starting: all_reduce_perf`` in the text, one JSON
document) is a section; every row gives two records, out of place (``native-oop``) and in
place (``native``). nccl-tests' ``size`` is the whole buffer of one rank; for allgather,
alltoall, gather and scatter it is ranks × the per-rank message, so it is divided by the
rank count (docs/schema.md) and kept as ``source_size_bytes``.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from hpcopt.importers.common import Parsed, Section, Source, build_record, choose_ranks

__all__ = ["PROGRAMS", "looks_like_nccl", "parse_nccl"]

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
# The collective's name in nccl-tests' JSON ("experiment_name").
_EXPERIMENTS = {
    "AllReduce": "all_reduce",
    "AllGather": "all_gather",
    "ReduceScatter": "reduce_scatter",
    "Reduce": "reduce",
    "Broadcast": "broadcast",
    "AlltoAll": "alltoall",
    "Gather": "gather",
    "Scatter": "scatter",
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
_FOOTER = re.compile(r"^#\s*(?P<key>Out of bounds values|Avg bus bandwidth|GPU memory usage)\s*:"
                     r"\s*(?P<value>.*?)\s*$")  # fmt: skip
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


def _program(name: str) -> str | None:
    """The nccl-tests program stem of a path or program name (``all_reduce``), or None."""
    base = os.path.basename(name)
    m = re.match(r"(all_reduce|all_gather|reduce_scatter|reduce|broadcast|alltoall|gather|"
                 r"scatter|sendrecv|hypercube|alltoallv)_perf", base)  # fmt: skip
    return m[1] if m else None


def _size_bytes(section: Section, size: int) -> int | None:
    if section.kernel not in _PER_RANK:
        return size
    return size // section.ranks if section.ranks else None


def _records(section: Section, row: dict[str, Any], line: int | None) -> list[dict[str, Any]]:
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
        out.append(build_record(section, algo=algo, dtype=dtype, size_bytes=size_bytes,
                                line=line, t_avg_us=time_us, **fields))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- text


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
        program = self.program or _program(self.source.name)
        if program is None:
            raise self.source.error(lineno, "cannot tell which nccl-tests program wrote this "
                                    "table (no 'Collective test starting' line); name the "
                                    "file after it, e.g. all_reduce_perf.txt")  # fmt: skip
        facts = dict(self.block)
        stated = len({d["rank"] for d in self.devices}) or None
        if self.devices:
            facts["devices"] = self.devices
            facts["hosts"] = [d["host"] for d in self.devices]
        kernel = PROGRAMS.get(program, "")
        ranks = choose_ranks(self.source, lineno, stated, self.ranks)
        self.names = names
        self.section = Section("nccl-tests", self.version, f"{program}_perf", kernel,
                               self.source.name, lineno, ranks, facts, device="cuda")  # fmt: skip
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
            self.program = _program(m[1]) or m[1]
            return
        if _CONFIG.match(line):
            self.block["options"] = line.lstrip("#").strip()
            self.block.update(_config(line))
            return
        m = _DEVICE.match(line)
        if m:
            if self.section is not None:
                self.start_block(keep_version=True)
            self.devices.append({"rank": int(m["rank"]), "host": m["host"],
                                 "device": int(m["dev"]), "bus": m["bus"],
                                 "name": m["name"]})  # fmt: skip
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
            raise self.source.error(lineno, f"{len(tokens)} values where the headings name "
                                    f"{len(self.names)}")  # fmt: skip
        row = _text_row(self.source, lineno, self.names, tokens)
        stated = {k: self.section.facts[k] for k in ("iters", "warmup") if k in self.section.facts}
        row.setdefault("common", {}).update(stated)
        if not self.section.kernel:
            return  # a program this importer does not map
        try:
            self.section.records += _records(self.section, row, lineno)
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
        pairs = [(n, t) for n, t in zip(names[lo:hi], tokens[lo:hi], strict=True)
                 if n != "timestamp"]  # fmt: skip
        row[key] = _group(source, lineno, pairs)
    if "timestamp" in names:
        row["common"] = {"timestamp": tokens[names.index("timestamp")]}
    return row


def _parse_text(source: Source, ranks: int | None) -> Parsed:
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


# ----------------------------------------------------------------------------- JSON


def _json_group(where: str, group: Any) -> dict[str, Any] | None:
    if group is None:
        return None
    if not isinstance(group, dict):
        raise ValueError(f"{where} is not an object")
    out: dict[str, Any] = {}
    for key, name in (("time", "time_us"), ("alg_bw", "algbw_GBps"), ("bus_bw", "busbw_GBps")):
        value = group.get(key)
        if value is not None and not isinstance(value, str):
            out[name] = _json_number(f"{where}.{key}", value)
    if "cpu_time" in group:
        out["cpu_time_s"] = _json_number(f"{where}.cpu_time", group["cpu_time"]) / 1e6
    if group.get("nwrong") is not None:
        out.update(wrong=int(_json_number(f"{where}.nwrong", group["nwrong"])), checked=True)
    if "time_us" not in out and "cpu_time_s" not in out:
        raise ValueError(f"{where} has no time")
    return out


def _per_iter(where: str, stats: Any) -> dict[str, Any]:
    if not isinstance(stats, dict):
        return {}
    names = {"min_us": "iter_min_s", "max_us": "iter_max_s", "avg_us": "iter_avg_s",
             "p50_us": "t_p50_s", "p95_us": "t_p95_s", "p99_us": "t_p99_s",
             "stdev_us": "iter_stdev_s"}  # fmt: skip
    out = {name: _json_number(f"{where}.{key}", stats[key]) / 1e6
           for key, name in names.items() if key in stats}  # fmt: skip
    if "cv_pct" in stats:
        out["iter_cv_pct"] = _json_number(f"{where}.cv_pct", stats["cv_pct"])
    return out


def _json_number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} is not a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where} is not a finite number >= 0")
    return float(value)


def _json_count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{where} is not a whole number")
    return value


def _json_row(i: int, item: Any) -> dict[str, Any]:
    where = f"results[{i}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object")
    if not isinstance(item.get("type"), str):
        raise ValueError(f"{where}.type is missing")
    root = str(item.get("root", "-1")).strip()
    row: dict[str, Any] = {
        "size": _json_count(f"{where}.size", item.get("size")),
        "type": item["type"],
        "redop": item.get("redop") if isinstance(item.get("redop"), str) else None,
        "root": int(root) if re.fullmatch(r"-?\d{1,18}", root) else None,
        "oop": _json_group(f"{where}.out_of_place", item.get("out_of_place")),
        "ip": _json_group(f"{where}.in_place", item.get("in_place")),
        "common": {},
    }
    if item.get("count") is not None:
        row["count"] = _json_count(f"{where}.count", item["count"])
    if item.get("actual_iterations") is not None:
        row["common"]["iters"] = _json_count(f"{where}.actual_iterations",
                                             item["actual_iterations"])  # fmt: skip
    for key, stats in (("oop", "out_of_place_per_iter"), ("ip", "in_place_per_iter")):
        if row[key] is not None:
            row[key].update(_per_iter(f"{where}.{stats}", item.get(stats)))
    return row


def _json_program(doc: dict[str, Any]) -> str | None:
    """The program stem from the command line, else from the first result's name."""
    args = doc.get("args")
    if isinstance(args, list) and args:
        program = _program(str(args[0]))
        if program:
            return program
    for item in doc["results"]:
        if isinstance(item, dict) and str(item.get("experiment_name")) in _EXPERIMENTS:
            return _EXPERIMENTS[str(item["experiment_name"])]
    return None


def _json_section(source: Source, doc: dict[str, Any], ranks: int | None) -> Section:
    program = _json_program(doc)
    if program is None:
        raise source.error(None, "nccl-tests JSON names no collective (args, experiment_name)")
    args = doc["args"] if isinstance(doc.get("args"), list) else []
    config = doc["config"] if isinstance(doc.get("config"), dict) else {}
    devices = config["devices"] if isinstance(config.get("devices"), list) else []
    stated = len(devices) or None
    return Section("nccl-tests", None, f"{program}_perf", PROGRAMS.get(program, ""),
                   source.name, None, choose_ranks(source, None, stated, ranks),
                   _json_facts(doc, config, args, devices), device="cuda")  # fmt: skip


_ENV_PREFIXES = ("NCCL_", "CUDA_", "UCX_", "FI_", "OMPI_", "I_MPI_", "MPICH_", "MV2_", "HCOLL_",
                 "SLURM_JOB", "SLURM_NNODES", "SLURM_NTASKS", "NVSHMEM_")  # fmt: skip


def _json_facts(doc: dict, config: dict, args: list, devices: list) -> dict[str, Any]:
    """Run facts of a JSON document; the environment only for transport variables."""
    facts: dict[str, Any] = {k: doc[k] for k in ("start_time", "end_time", "version")
                             if k in doc}  # fmt: skip
    if args:
        facts["command"] = " ".join(str(a) for a in args)
    if isinstance(doc.get("nccl_version"), int):
        facts["nccl_version"] = nccl_version(doc["nccl_version"])
    env: dict[str, str] = {}
    for entry in map(str, doc["env"] if isinstance(doc.get("env"), list) else []):
        key, sep, value = entry.partition("=")
        if sep and key.startswith(_ENV_PREFIXES):
            env[key] = value
    facts["env"] = env
    facts.update({f"config_{k}": v for k, v in config.items() if k != "devices"})
    if devices:
        facts["devices"] = devices
        facts["hosts"] = [d.get("hostname") for d in devices if isinstance(d, dict)]
    for key in ("out_of_bounds", "average_bus_bandwidth", "errors"):
        if key in doc:
            facts[key] = doc[key]
    return facts


def _average_flag(args: list) -> str | None:
    """nccl-tests' -a/--average value from its command line, if given."""
    for i, arg in enumerate(args):
        if str(arg) in ("-a", "--average") and i + 1 < len(args):
            return str(args[i + 1])
        if str(arg).startswith("--average="):
            return str(arg).split("=", 1)[1]
    return None


def _parse_json(source: Source, ranks: int | None) -> Parsed:
    try:
        doc = json.loads(source.text)
    except json.JSONDecodeError as exc:
        raise source.error(exc.lineno, f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise source.error(None, "JSON nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise source.error(None, "JSON without a 'results' list: not nccl-tests -J output")
    section = _json_section(source, doc, ranks)
    parsed = Parsed([section] if section.kernel else [])
    if not section.kernel:
        parsed.skipped.append(f"nccl-tests {section.benchmark}")
        return parsed
    average = _average_flag(doc.get("args") or [])
    try:
        for i, item in enumerate(doc["results"]):
            row = _json_row(i, item)
            if average not in (None, "1"):
                _restate_average(row, average)
            for rec in _records(section, row, None):
                rec["source_index"] = i
                section.records.append(rec)
    except ValueError as exc:
        raise source.error(None, str(exc)) from None
    return parsed


def _restate_average(row: dict[str, Any], average: str) -> None:
    """With -a 0/2/3 nccl-tests' time is rank 0's, the minimum or the maximum, not the mean."""
    key = {"0": "t_rank0_s", "2": "t_min_us", "3": "t_max_us"}.get(average)
    for group in (row.get("oop"), row.get("ip")):
        if group and "time_us" in group:
            value = group.pop("time_us")
            if key:
                group[key] = value / 1e6 if key == "t_rank0_s" else value


def parse_nccl(source: Source, ranks: int | None = None) -> Parsed:
    """nccl-tests text or JSON output; ``ranks`` fills in a rank count the source omits."""
    if source.text.lstrip().startswith("{"):
        return _parse_json(source, ranks)
    return _parse_text(source, ranks)

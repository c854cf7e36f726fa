"""nccl-tests' JSON output (``-J FILE``, format versions 1 and 2): one document, one section.

The rows have the text table's meaning (see :mod:`hpcopt.importers.nccl`); the document
adds the command line, start and end times, the NCCL version code, the configuration, the
devices and the environment, of which only transport variables are kept.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hpcopt.importers.common import Parsed, Section, Source, choose_ranks
from hpcopt.importers.nccl import PROGRAMS, nccl_version, program_of, row_records

__all__ = ["parse_nccl_json"]

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
    names = {
        "min_us": "iter_min_s",
        "max_us": "iter_max_s",
        "avg_us": "iter_avg_s",
        "p50_us": "t_p50_s",
        "p95_us": "t_p95_s",
        "p99_us": "t_p99_s",
        "stdev_us": "iter_stdev_s",
    }
    out = {
        name: _json_number(f"{where}.{key}", stats[key]) / 1e6
        for key, name in names.items()
        if key in stats
    }
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
        row["common"]["iters"] = _json_count(
            f"{where}.actual_iterations", item["actual_iterations"]
        )
    for key, stats in (("oop", "out_of_place_per_iter"), ("ip", "in_place_per_iter")):
        if row[key] is not None:
            row[key].update(_per_iter(f"{where}.{stats}", item.get(stats)))
    return row


def _jsonprogram_of(doc: dict[str, Any]) -> str | None:
    """The program stem from the command line, else from the first result's name."""
    args = doc.get("args")
    if isinstance(args, list) and args:
        program = program_of(str(args[0]))
        if program:
            return program
    for item in doc["results"]:
        if isinstance(item, dict) and str(item.get("experiment_name")) in _EXPERIMENTS:
            return _EXPERIMENTS[str(item["experiment_name"])]
    return None


def _json_section(source: Source, doc: dict[str, Any], ranks: int | None) -> Section:
    program = _jsonprogram_of(doc)
    if program is None:
        raise source.error(None, "nccl-tests JSON names no collective (args, experiment_name)")
    args = doc["args"] if isinstance(doc.get("args"), list) else []
    config = doc["config"] if isinstance(doc.get("config"), dict) else {}
    devices = config["devices"] if isinstance(config.get("devices"), list) else []
    stated = len(devices) or None
    return Section(
        "nccl-tests",
        None,
        f"{program}_perf",
        PROGRAMS.get(program, ""),
        source.name,
        None,
        choose_ranks(source, None, stated, ranks),
        _json_facts(doc, config, args, devices),
        device="cuda",
    )


_ENV_PREFIXES = (
    "NCCL_",
    "CUDA_",
    "UCX_",
    "FI_",
    "OMPI_",
    "I_MPI_",
    "MPICH_",
    "MV2_",
    "HCOLL_",
    "SLURM_JOB",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "NVSHMEM_",
)


def _json_facts(doc: dict, config: dict, args: list, devices: list) -> dict[str, Any]:
    """Run facts of a JSON document; the environment only for transport variables."""
    facts: dict[str, Any] = {k: doc[k] for k in ("start_time", "end_time", "version") if k in doc}
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


def parse_nccl_json(source: Source, ranks: int | None = None) -> Parsed:
    """nccl-tests' JSON; ``ranks`` fills in a rank count the document omits."""
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
            for rec in row_records(section, row, None):
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

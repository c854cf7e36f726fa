"""Turning a log into records and printing them as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from hpcopt.errors import UsageError
from hpcopt.log import Log

__all__ = ["FORMATS", "REPORT_FIELDS", "render", "report_records", "text_table"]

FORMATS = ("table", "json", "csv")

# Every record carries these, in this order (None where a kind has no such field).
REPORT_FIELDS = (
    "kernel",
    "algo",
    "encoder",
    "dtype",
    "size_bytes",
    "ranks",
    "t_min_s",
    "t_avg_s",
    "t_max_s",
    "t_p50_s",
    "t_p99_s",
    "algbw_GBps",
    "busbw_GBps",
    "wire_bytes",
    "wrong",
    "tag",
)

# Table columns in display order: (field, header, scale, format).
_TABLE_COLUMNS: tuple[tuple[str, str, float, str], ...] = (
    ("tag", "tag", 1, "{}"),
    ("algo", "algo", 1, "{}"),
    ("encoder", "encoder", 1, "{}"),
    ("problem", "problem", 1, "{}"),
    ("dtype", "dtype", 1, "{}"),
    ("size_bytes", "size(B)", 1, "{:d}"),
    ("ranks", "ranks", 1, "{:d}"),
    ("t_avg_s", "avg(us)", 1e6, "{:.2f}"),
    ("t_min_s", "min(us)", 1e6, "{:.2f}"),
    ("t_max_s", "max(us)", 1e6, "{:.2f}"),
    ("t_p99_s", "p99(us)", 1e6, "{:.2f}"),
    ("busbw_GBps", "busbw(GB/s)", 1, "{:.3f}"),
    ("wire_bytes", "wire(B)", 1, "{:d}"),
    ("compression_ratio", "ratio", 1, "{:.1f}"),
    ("rel_error", "rel_err", 1, "{:.2e}"),
    ("encode_GBps", "enc(GB/s)", 1, "{:.3f}"),
    ("decode_GBps", "dec(GB/s)", 1, "{:.3f}"),
    ("eps", "eps", 1, "{:.1e}"),
    ("reached", "reached", 1, "{}"),
    ("iters_to_eps", "iters", 1, "{:d}"),
    ("bits_to_eps", "bits", 1, "{:.3e}"),
    ("time_to_eps_s", "time(s)", 1, "{:.3f}"),
    ("final_subopt", "subopt", 1, "{:.2e}"),
    ("wrong", "wrong", 1, "{:d}"),
)


def report_records(log: Log) -> list[dict[str, Any]]:
    """One flat record per logged measurement: REPORT_FIELDS first, then the rest."""
    out = []
    for rec in log.records():
        row = {key: rec.get(key) for key in REPORT_FIELDS}
        row.update({k: v for k, v in rec.items() if k not in row})
        out.append(row)
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any, scale: float, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    if scale != 1:
        value = value * scale
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def text_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns, two spaces apart."""
    rows = [list(head), *map(list, body)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _table(records: Sequence[dict[str, Any]]) -> str:
    blocks: list[str] = []
    for kernel in dict.fromkeys(r["kernel"] for r in records):
        group = [r for r in records if r["kernel"] == kernel]
        cols = [c for c in _TABLE_COLUMNS if any(r.get(c[0]) not in (None, "") for r in group)]
        rows = [[_cell(r.get(f), s, fmt) for f, _, s, fmt in cols] for r in group]
        blocks.append(f"# kernel: {kernel}\n{text_table([c[1] for c in cols], rows)}\n")
    return "\n".join(blocks)


def _csv(records: Sequence[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def render(records: Sequence[dict[str, Any]], fmt: str) -> str:
    """Records as ``table``, ``json`` (a list of objects) or ``csv``."""
    if fmt == "json":
        safe = [{k: _json_safe(v) for k, v in r.items()} for r in records]
        return json.dumps(safe, indent=1)
    if fmt == "csv":
        return _csv(records)
    if fmt == "table":
        return _table(records) if records else "(no records)"
    raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

"""Turning a log into records and printing them as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from hpcopt.analysis.text import text_table, to_json
from hpcopt.errors import UsageError
from hpcopt.log import Log
from hpcopt.record import FIELDS, REPORT_ORDER, REPORT_TABLE

__all__ = ["FORMATS", "render", "report_records"]

FORMATS = ("table", "json", "csv")


def report_records(log: Log) -> list[dict[str, Any]]:
    """One flat record per logged measurement: REPORT_ORDER's fields first, then the rest."""
    out = []
    for rec in log.records():
        row = {key: rec.get(key) for key in REPORT_ORDER}
        row.update({k: v for k, v in rec.items() if k not in row})
        out.append(row)
    return out


def _table(records: Sequence[dict[str, Any]]) -> str:
    blocks: list[str] = []
    for kernel in dict.fromkeys(r["kernel"] for r in records):
        group = [r for r in records if r["kernel"] == kernel]
        cols = [FIELDS[n] for n in REPORT_TABLE if any(r.get(n) not in (None, "") for r in group)]
        rows = [[f.text(r.get(f.name)) for f in cols] for r in group]
        blocks.append(f"# kernel: {kernel}\n{text_table([f.header for f in cols], rows)}\n")
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
        return to_json(records)
    if fmt == "csv":
        return _csv(records)
    if fmt == "table":
        return _table(records) if records else "(no records)"
    raise UsageError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

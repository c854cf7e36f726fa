"""Plain-text tables and JSON output shared by the report and the analysis commands."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["fmt_num", "text_table", "to_json"]


def fmt_num(value: Any, spec: str = ".3g", scale: float = 1.0) -> str:
    """A number scaled and formatted, ``-`` for missing, ``inf`` spelled out."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value * scale, spec)


def text_table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns, two spaces apart."""
    rows = [list(head), *map(list, body)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


def to_json(records: Sequence[dict[str, Any]]) -> str:
    """Records as a JSON list; NaN becomes null and infinities the strings inf/-inf."""
    return json.dumps(_safe(list(records)), indent=1)

"""Logs as pandas DataFrames: one row per record, or one per (record, rank, iteration).

pandas is an optional extra (``pip install 'hpcopt[pandas]'``);
:meth:`hpcopt.log.Log.to_dataframe` calls :func:`log_frame`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.errors import UsageError
from hpcopt.log import INT_FIELDS, Log

__all__ = ["KEY_COLUMNS", "SAMPLE_COLUMNS", "log_frame"]

# Leading columns of every frame: where the record is, what was measured, on which run.
KEY_COLUMNS = ("run", "record", "tag", "kernel", "algo", "encoder", "dtype", "size_bytes", "ranks")
SAMPLE_COLUMNS = (*KEY_COLUMNS, "rank", "iteration", "time_s")
_INT_COLUMNS = ("run", "record")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UsageError("pandas is not installed; pip install 'hpcopt[pandas]'") from None
    return pandas


def _record_rows(log: Log) -> list[dict[str, Any]]:
    rows = []
    for i, run in enumerate(log.runs):
        for j, rec in enumerate(run.records):
            row: dict[str, Any] = {"run": i, "record": j, "tag": run.meta.get("tag", "")}
            row["kernel"] = run.meta.get("kernel")
            row["ranks"] = run.meta.get("ranks")
            row.update(rec)
            rows.append(row)
    return rows


def _sample_columns(log: Log) -> dict[str, list[np.ndarray]]:
    """Column pieces of the long form, from every record's ``times_s`` (ranks × iterations)."""
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in SAMPLE_COLUMNS}
    keys = _record_rows(log)
    arrays = [a for run in log.runs for a in run.arrays]
    for row, arr in zip(keys, arrays, strict=True):
        times = arr.get("times_s")
        if times is None or not np.size(times):
            continue
        times = np.atleast_2d(np.asarray(times, dtype=float))
        ranks, iters = times.shape[0], times.shape[-1]
        n = times.size
        for name in KEY_COLUMNS:
            pieces[name].append(np.full(n, row.get(name), dtype=object))
        pieces["rank"].append(np.repeat(np.arange(ranks), n // ranks))
        pieces["iteration"].append(np.tile(np.arange(iters), n // iters))
        pieces["time_s"].append(times.ravel())
    return pieces


def log_frame(log: Log, samples: bool = False) -> Any:
    """A DataFrame of ``log``: one row per record, or (``samples``) per record, rank, iteration."""
    pd = _pandas()
    if samples:
        pieces = _sample_columns(log)
        data = {k: np.concatenate(v) if v else np.array([]) for k, v in pieces.items()}
        frame = pd.DataFrame(data, columns=list(SAMPLE_COLUMNS))
        return frame.infer_objects()
    rows = _record_rows(log)
    columns = list(dict.fromkeys([*KEY_COLUMNS, *(k for r in rows for k in r)]))
    frame = pd.DataFrame(rows, columns=columns)
    whole = [c for c in (*_INT_COLUMNS, *INT_FIELDS) if c in frame.columns]
    return frame.astype(dict.fromkeys(whole, "Int64"))  # whole numbers stay whole beside gaps

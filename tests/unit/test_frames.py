"""Log.to_dataframe: one row per record, the per-iteration samples in long form, no pandas."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.frames import KEY_COLUMNS, SAMPLE_COLUMNS
from hpcopt.log import LogWriter, read_log

pytest.importorskip("pandas")


def record(size: int, t: float) -> dict:
    return {"kernel": "allreduce", "algo": "ring", "encoder": "none", "dtype": "float32",
            "size_bytes": size, "t_avg_s": t, "wrong": 0}  # fmt: skip


def two_runs(tmp_path: Path) -> Path:
    """Run 0: two records with (2, 3) and (2, 4) times; run 1: one record without arrays."""
    writer = LogWriter(tmp_path / "a.h5")
    writer.start_run({"kernel": "allreduce", "tag": "shm", "ranks": 2})
    times = [np.arange(6.0).reshape(2, 3), 10 + np.arange(8.0).reshape(2, 4)]
    for size, t in zip((8, 16), times, strict=True):
        writer.append(record(size, float(t.mean())), {"times_s": t})
    writer.start_run({"kernel": "p2p", "tag": "osu"})  # an imported run: ranks not stated
    writer.append(dict(record(4, 2e-6), kernel="p2p", algo="pingpong", source_tool="osu"))
    return writer.close()


def test_one_row_per_record(tmp_path: Path) -> None:
    frame = read_log(two_runs(tmp_path)).to_dataframe()
    assert list(frame.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    assert len(frame) == 3
    assert list(frame.run) == [0, 0, 1] and list(frame.record) == [0, 1, 0]
    assert list(frame.tag) == ["shm", "shm", "osu"]
    assert list(frame.kernel) == ["allreduce", "allreduce", "p2p"]
    assert frame.ranks.iloc[0] == 2 and frame.ranks.isna().iloc[2]
    assert str(frame.size_bytes.dtype) == "Int64" and str(frame.ranks.dtype) == "Int64"
    assert frame.t_avg_s.iloc[1] == pytest.approx(13.5)
    assert frame.source_tool.isna().iloc[0] and frame.source_tool.iloc[2] == "osu"


def test_samples_in_long_form(tmp_path: Path) -> None:
    frame = read_log(two_runs(tmp_path)).to_dataframe(samples=True)
    assert list(frame.columns) == list(SAMPLE_COLUMNS)
    assert len(frame) == 6 + 8  # the record without times adds no rows
    second = frame[frame.record == 1]
    assert list(second["rank"]) == [0] * 4 + [1] * 4
    assert list(second.iteration) == [0, 1, 2, 3] * 2
    assert list(second.time_s) == [10.0 + i for i in range(8)]
    assert set(second.size_bytes) == {16} and set(second.tag) == {"shm"}


def test_empty_log(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "e.h5")
    writer.start_run({"kernel": "allreduce", "tag": "", "ranks": 1})
    log = read_log(writer.close())
    assert len(log.to_dataframe()) == 0
    assert list(log.to_dataframe(samples=True).columns) == list(SAMPLE_COLUMNS)


def test_missing_pandas_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    log = read_log(two_runs(tmp_path))
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(UsageError) as err:
        log.to_dataframe()
    assert str(err.value) == "pandas is not installed; pip install 'hpcopt[pandas]'"
    assert err.value.__cause__ is None and err.value.__suppress_context__

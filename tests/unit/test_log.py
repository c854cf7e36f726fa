"""HDF5 log: round trip, partial files, merging and refusal of foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.log import (
    SCHEMA_VERSION,
    LogError,
    LogWriter,
    check_output_path,
    merge_logs,
    partial_path,
    read_log,
)

META = {"kernel": "allreduce", "tag": "shm", "ranks": 2, "slurm": {"SLURM_JOB_ID": "7"}}


def record(size: int) -> tuple[dict, dict]:
    fields = {
        "kernel": "allreduce",
        "algo": "ring",
        "encoder": "none",
        "dtype": "float32",
        "size_bytes": size,
        "t_avg_s": 1e-5,
        "wrong": 0,
        "checked": True,
    }
    return fields, {"times_s": np.full((2, 3), 1e-5), "wire_bytes_per_rank": np.array([4, 4])}


def test_round_trip(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "a.h5")
    writer.start_run(META)
    for size in (8, 16):
        writer.append(*record(size))
    path = writer.close()
    assert not partial_path(path).exists()
    log = read_log(path)
    assert not log.partial and len(log.runs) == 1
    run = log.runs[0]
    assert run.meta == META
    assert [r["size_bytes"] for r in run.records] == [8, 16]
    assert run.records[0]["checked"] is True
    assert run.arrays[1]["times_s"].shape == (2, 3)
    assert log.records()[0]["tag"] == "shm" and log.records()[0]["ranks"] == 2


def test_unfinished_run_leaves_readable_partial(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "b.h5")
    writer.start_run(META)
    writer.append(*record(8))
    # Simulate a crash: the writer is never closed; read while it is still open elsewhere.
    log = read_log(partial_path(tmp_path / "b.h5"))
    assert log.partial and [r["size_bytes"] for r in log.runs[0].records] == [8]


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "c.h5"
    target.write_bytes(b"")
    with pytest.raises(UsageError, match="--overwrite"):
        check_output_path(target, overwrite=False)
    check_output_path(target, overwrite=True)
    partial_path(tmp_path / "d.h5").write_bytes(b"")
    with pytest.raises(UsageError, match="exists"):
        check_output_path(tmp_path / "d.h5", overwrite=False)


def test_merge_keeps_every_run(tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        writer = LogWriter(tmp_path / f"r{i}.h5")
        writer.start_run({**META, "tag": f"t{i}"})
        writer.append(*record(8 * (i + 1)))
        paths.append(writer.close())
    merged = read_log(merge_logs(paths, tmp_path / "all.h5"))
    assert [r.meta["tag"] for r in merged.runs] == ["t0", "t1"]


def _h5(path: Path, **attrs: object) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        f.create_group("runs")
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_text("not hdf5"), "unreadable"),
        (lambda p: _h5(p, format="other", schema_version=1), "not an hpcopt log"),
        (lambda p: _h5(p, format="hpcopt-log", schema_version=SCHEMA_VERSION + 1), "newer"),
        (lambda p: _h5(p, format="hpcopt-log"), "schema version"),
    ],
)
def test_foreign_files_give_one_line_errors(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.h5"
    make(path)
    with pytest.raises(LogError, match=message) as err:
        read_log(path)
    assert "\n" not in str(err.value)


def test_record_without_required_fields_is_rejected(tmp_path: Path) -> None:
    path = _h5(tmp_path / "y.h5", format="hpcopt-log", schema_version=1)
    with h5py.File(path, "a") as f:
        run = f["runs"].create_group("0000")
        run.attrs["meta"] = json.dumps(META)
        run.create_group("records").create_group("000000").attrs["kernel"] = "allreduce"
    with pytest.raises(LogError, match="missing field"):
        read_log(path)


def test_a_read_that_never_finishes_is_cut_off(tmp_path: Path, monkeypatch) -> None:
    import time

    import hpcopt.log as log_module

    path = LogWriter(tmp_path / "slow.h5").close()
    monkeypatch.setattr(log_module, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(log_module, "_read_checked", lambda p: time.sleep(30))
    monkeypatch.setattr(log_module, "_may_fork", lambda: True)  # the child only sleeps
    started = time.monotonic()
    with pytest.raises(LogError, match="did not finish"):
        read_log(path)
    assert time.monotonic() - started < 10


def test_every_schema_field_is_documented() -> None:
    """docs/schema.md names every field of hpcopt/record.py, so the two cannot drift apart."""
    from mpirun import ROOT

    from hpcopt.record import FIELDS

    text = (ROOT / "docs" / "schema.md").read_text()
    assert [name for name in FIELDS if f"`{name}`" not in text] == []


def _written(path: Path, sizes: list[int]) -> Path:
    writer = LogWriter(path)
    writer.start_run(META)
    for size in sizes:
        writer.append(*record(size))
    return writer.close()


def test_one_bad_record_is_skipped_and_named(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.h5", [8, 16, 32])
    with h5py.File(path, "a") as f:
        del f["runs/0000/records/000001"].attrs["algo"]
    log = read_log(path)
    assert [r["size_bytes"] for r in log.records()] == [8, 32]
    assert len(log.problems) == 1 and "000001" in log.problems[0]
    assert "missing field" in log.problems[0]


def test_overwrite_waits_for_no_one_and_refuses_a_file_being_written(tmp_path: Path) -> None:
    from hpcopt.errors import UsageError

    path = tmp_path / "same.h5"
    first = LogWriter(path)
    with pytest.raises(UsageError, match="another run is writing"):
        LogWriter(path, overwrite=True)
    first.start_run(META)
    first.append(*record(8))
    assert read_log(first.close()).records()[0]["size_bytes"] == 8
    second = LogWriter(path, overwrite=True)  # the first one is done: now it may replace it
    assert read_log(path).records()[0]["size_bytes"] == 8, "replaced only when finished"
    second.start_run(META)
    second.append(*record(16))
    assert read_log(second.close()).records()[0]["size_bytes"] == 16


@pytest.mark.parametrize("target", ["/dev/null", "dir", "fifo", "link"])
def test_overwrite_replaces_only_regular_files(tmp_path: Path, target: str) -> None:
    import os

    from hpcopt.errors import UsageError

    if target == "/dev/null":
        path = Path(target)
    else:
        path = tmp_path / target
        if target == "dir":
            path.mkdir()
        elif target == "fifo":
            os.mkfifo(path)
        else:
            (tmp_path / "real.h5").write_text("keep")
            path.symlink_to(tmp_path / "real.h5")
    with pytest.raises(UsageError, match=r"not a regular file|is a directory"):
        LogWriter(path, overwrite=True)
    assert target != "link" or (tmp_path / "real.h5").read_text() == "keep"


def test_a_merge_never_writes_over_its_input_and_keeps_partial(tmp_path: Path) -> None:
    from hpcopt.errors import UsageError
    from hpcopt.log import merge_logs
    from hpcopt.output import partial_path

    done = _written(tmp_path / "src.h5", [8, 16])
    unfinished = LogWriter(tmp_path / "run.h5")
    unfinished.start_run(META)
    unfinished.append(*record(8))
    unfinished._file.close()  # a killed run: only run.h5.partial is left
    unfinished._lock.release()
    with pytest.raises(UsageError, match="also an input"):
        merge_logs([done, partial_path(done)], done, overwrite=True)
    with pytest.raises(UsageError, match="also an input"):
        merge_logs([partial_path(tmp_path / "run.h5")], tmp_path / "run.h5", overwrite=True)
    merged = merge_logs([done, partial_path(tmp_path / "run.h5")], tmp_path / "m.h5")
    log = read_log(merged)
    assert log.partial and len(log.records()) == 3
    assert len(read_log(done).records()) == 2


def test_a_growing_record_is_readable_at_every_update(tmp_path: Path) -> None:
    """A run in progress keeps its record up to date (train): each update replaces the
    record's fields and arrays, and the partial file reads back the latest state."""
    writer = LogWriter(tmp_path / "g.h5")
    writer.start_run(META)
    fields, _ = record(8)
    writer.append({**fields, "note": "x"}, {"iter": np.arange(2)}, growing=True)
    for n in (5, 3, 9):
        writer.update({**fields, "iters": n, "note": None}, {"iter": np.arange(n)})
        (rec,) = read_log(partial_path(tmp_path / "g.h5")).runs[0].arrays
        assert list(rec["iter"]) == list(range(n))
    (fields_back,) = read_log(partial_path(tmp_path / "g.h5")).runs[0].records
    assert fields_back["iters"] == 9 and "note" not in fields_back
    read_log(writer.close())


def test_update_needs_a_record(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "u.h5")
    writer.start_run(META)
    with pytest.raises(RuntimeError, match="growing=True"):
        writer.update(record(8)[0])


def test_default_names_of_runs_in_the_same_second_do_not_collide(tmp_path: Path) -> None:
    from hpcopt.output import partial_path, stamped_path

    first = stamped_path("train", tmp_path)
    first.write_bytes(b"")
    second = stamped_path("train", tmp_path)
    partial_path(second).write_bytes(b"")
    third = stamped_path("train", tmp_path)
    assert first.parent == tmp_path and first.name.startswith("train-")
    assert len({first, second, third}) == 3
    # a run in the next second may start over at the plain name; within one second they count up
    if second.name.startswith(first.stem):
        assert second.name == f"{first.stem}-2.h5" and third.name == f"{first.stem}-3.h5"


def test_a_second_writer_of_one_output_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    """What keeps two suites (or a suite and a kernel) from destroying each other's log."""
    from hpcopt.errors import UsageError
    from hpcopt.output import locked_output

    target = tmp_path / "suite.h5"
    with (
        locked_output(target, overwrite=True),
        pytest.raises(UsageError, match="another run is writing"),
        locked_output(target, overwrite=True),
    ):
        pass
    with locked_output(target, overwrite=True):  # free again once the first is done
        pass

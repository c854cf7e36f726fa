"""Reader robustness: damaged, foreign, newer, mistyped and partial logs never raise tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from analysis_synth import model_runs, timed, write_log

from hpcopt.cli import main
from hpcopt.log import Log, LogError, LogWriter, partial_path, read_log


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("src") / "src.h5"
    return write_log(path, model_runs(["ring"], [2], noise=0.0)[:1]).read_bytes()


def _outcome(path: Path) -> str:
    try:
        log = read_log(path)
    except LogError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return "error"
    assert isinstance(log, Log)
    for run in log.runs:
        assert all(isinstance(r["kernel"], str) for r in run.records)
    return "log"


def test_fuzzed_copies_read_as_a_log_or_one_line_error(tmp_path: Path, real_log: bytes) -> None:
    rng = np.random.default_rng(2024)
    seen = set()
    for case in range(100):
        data = bytearray(real_log)
        if case % 2:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for offset in rng.integers(0, len(data), size=int(rng.integers(1, 16))):
                data[offset] ^= int(rng.integers(1, 256))
        path = tmp_path / f"fuzz{case}.h5"
        path.write_bytes(bytes(data))
        seen.add(_outcome(path))
    assert seen == {"log", "error"}


def _mutated(tmp_path: Path, mutate) -> Path:
    path = write_log(
        tmp_path / "m.h5", [({"tag": "t", "ranks": 2}, [timed("p2p", "x", 2, 8, 1e-6)])]
    )
    with h5py.File(path, "a") as f:
        mutate(f, f["runs/0000/records/000000"])
    return path


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda f, r: r.attrs.__setitem__("kernel", 3), "wrong type"),
        (lambda f, r: r.attrs.__setitem__("size_bytes", "big"), "wrong type"),
        (lambda f, r: r.attrs.__setitem__("algo", np.arange(3)), "not a scalar"),
        (lambda f, r: r.create_group("times_s2"), "not a numeric"),
        (lambda f, r: f["runs/0000"].attrs.__setitem__("meta", "[1]"), "not an object"),
        (lambda f, r: f["runs/0000"].attrs.__setitem__("meta", "{"), "metadata"),
        (lambda f, r: f["runs/0000"].attrs.__setitem__("meta", json.dumps({"ranks": "2"})), "type"),
        (lambda f, r: f["runs/0000"].__delitem__("records"), "no records"),
        (lambda f, r: f.attrs.__setitem__("schema_version", 99), "newer"),
        (lambda f, r: f.attrs.__setitem__("schema_version", "1"), "schema version"),
        (lambda f, r: (f.__delitem__("runs"), f.create_dataset("runs", data=1)), "no runs"),
    ],
)
def test_mistyped_contents_are_one_line_errors(tmp_path: Path, mutate, message: str) -> None:
    path = _mutated(tmp_path, mutate)
    with pytest.raises(LogError, match=message) as err:
        read_log(path)
    assert "\n" not in str(err.value)


def test_unfinished_last_record_of_a_partial_log_is_left_out(tmp_path: Path, capsys) -> None:
    writer = LogWriter(tmp_path / "k.h5")
    writer.start_run({"tag": "t", "ranks": 2})
    writer.append(*timed("p2p", "pingpong", 2, 8, 1e-6))
    writer._file["runs/0000/records"].create_group("000001")  # killed before its fields
    writer._file.flush()
    log = read_log(partial_path(tmp_path / "k.h5"))
    assert log.partial and len(log.runs[0].records) == 1
    assert main(["report", str(partial_path(tmp_path / "k.h5"))]) == 0
    assert "1 completed" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 40, b"plain text\n"])
def test_cli_reports_damaged_files_in_one_line(tmp_path: Path, content: bytes, capsys) -> None:
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    for args in (["report", str(path)], ["model", "fit", str(path)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("hpcopt: error:") and err.count("\n") == 1

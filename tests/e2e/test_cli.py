"""The hpcopt command: info, report formats, suite end to end, errors as one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpirun import ROOT

from hpcopt.cli import main
from hpcopt.log import LogWriter, partial_path
from hpcopt.record import REPORT_ORDER


def hpcopt(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpcopt.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def small_log(path: Path, close: bool = True) -> Path:
    writer = LogWriter(path)
    writer.start_run({"kernel": "allreduce", "tag": "shm", "ranks": 2})
    for size in (8, 1024):
        writer.append(
            {
                "kernel": "allreduce",
                "algo": "ring",
                "encoder": "none",
                "dtype": "float32",
                "size_bytes": size,
                "t_min_s": 1e-6,
                "t_avg_s": 2e-6,
                "t_max_s": 3e-6,
                "t_p50_s": 2e-6,
                "t_p99_s": 3e-6,
                "algbw_GBps": 0.5,
                "busbw_GBps": 0.5,
                "wire_bytes": size,
                "wrong": 0,
            },
            {"times_s": np.full((2, 2), 2e-6)},
        )
    return writer.close() if close else path


def test_info_names_the_mpi_library(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "MPI library" in out and "thread level" in out and "CUDA-aware MPI" in out


def test_report_json_has_every_required_field(tmp_path: Path, capsys) -> None:
    path = small_log(tmp_path / "a.h5")
    assert main(["report", str(path), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 2
    for rec in records:
        assert list(rec)[: len(REPORT_ORDER)] == list(REPORT_ORDER)
        assert rec["tag"] == "shm" and rec["ranks"] == 2 and rec["encoder"] == "none"


def test_report_csv_and_table(tmp_path: Path, capsys) -> None:
    path = small_log(tmp_path / "a.h5")
    assert main(["report", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["size_bytes"] for r in rows] == ["8", "1024"]
    assert main(["report", str(path)]) == 0
    table = capsys.readouterr().out
    assert "# kernel: allreduce" in table and "busbw(GB/s)" in table


def test_report_of_a_partial_log_says_so(tmp_path: Path, capsys) -> None:
    small_log(tmp_path / "b.h5", close=False)
    assert main(["report", str(partial_path(tmp_path / "b.h5"))]) == 0
    captured = capsys.readouterr()
    assert "partial log" in captured.err and "2 completed" in captured.err


@pytest.mark.parametrize(
    "args,message",
    [
        (["report", "/nonexistent.h5"], "no such file"),
        (["bogus"], "invalid choice"),
        (["report", "x.h5", "--format", "xml"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str) -> None:
    proc = hpcopt(*args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_suite_runs_the_default_kernels_into_one_log(tmp_path: Path) -> None:
    out = tmp_path / "suite.h5"
    proc = hpcopt("suite", "-e", "64K", "-o", str(out), "--tag", "unit", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "allreduce (2 ranks)" in proc.stdout and "p2p: latency" in proc.stdout
    verdicts = [line for line in proc.stdout.splitlines() if "pays below" in line]
    assert len(verdicts) == 3 and all("GB/s" in line for line in verdicts), proc.stdout
    names = ("fp16 is", "sign+ef is", "topk:ratio=0.01+ef is")
    assert all(name in line for name, line in zip(names, verdicts, strict=True))
    report = json.loads(hpcopt("report", str(out), "--format", "json").stdout)
    kernels = {r["kernel"] for r in report}
    assert {"allreduce", "p2p"} <= kernels
    assert all(r["tag"] == "unit" and r["wrong"] == 0 for r in report)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "parts cleaned up"
    again = hpcopt("suite", "-e", "64K", "-o", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_merge_joins_runs(tmp_path: Path, capsys) -> None:
    a, b = small_log(tmp_path / "a.h5"), small_log(tmp_path / "b.h5")
    assert main(["merge", str(tmp_path / "ab.h5"), str(a), str(b)]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "ab.h5"), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert main(["merge", str(tmp_path / "ab.h5"), str(a)]) == 2

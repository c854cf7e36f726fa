"""The C timing core: builds with the MPI's own wrapper, times every operation correctly,
compiles once under concurrent first use, and falls back with one line without a compiler."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mpirun import ROOT, run_mpi

STATUS_SCRIPT = (
    "from hpcopt.timer import status; s = status(); "
    "print(s.available); print(s.reason); print(s.persistent)"
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for this module's MPI runs, so the core is compiled once for all of them."""
    path = tmp_path_factory.mktemp("hpcopt-cache")
    old = os.environ.get("HPCOPT_CACHE")
    os.environ["HPCOPT_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HPCOPT_CACHE")
    else:
        os.environ["HPCOPT_CACHE"] = old


def status_in_subprocess(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``status()`` of a fresh singleton process with the given environment."""
    return subprocess.run(
        [sys.executable, "-c", STATUS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_core_builds_with_the_wheels_mpicc(tmp_path: Path) -> None:
    env = dict(os.environ, HPCOPT_CACHE=str(tmp_path))
    env.pop("MPICC", None)
    proc = status_in_subprocess(env)
    assert proc.returncode == 0, proc.stderr
    available, where, _ = proc.stdout.splitlines()
    assert available == "True", where
    assert Path(where).is_file() and Path(where).parent == tmp_path / "timer"
    assert "built" in (tmp_path / "timer" / "builds.log").read_text()


def test_concurrent_first_use_compiles_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HPCOPT_CACHE", str(tmp_path))
    monkeypatch.delenv("MPICC", raising=False)
    proc = run_mpi(ROOT / "tests" / "helpers" / "ctimer_status.py", 4, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("available True on all ranks True") == 4, proc.stdout
    events = (tmp_path / "timer" / "builds.log").read_text().splitlines()
    assert len(events) == 1 and " built " in events[0], events
    assert not list((tmp_path / "timer").glob("*.tmp"))


@pytest.mark.parametrize(
    "change",
    [{"MPICC": "/nonexistent"}, {"PATH": ""}],
    ids=["MPICC-missing", "empty-PATH"],
)
def test_no_compiler_gives_one_line_and_no_traceback(tmp_path: Path, change: dict) -> None:
    env = dict(os.environ, HPCOPT_CACHE=str(tmp_path), **change)
    if "PATH" in change:
        env.pop("MPICC", None)
    proc = status_in_subprocess(env)
    assert proc.returncode == 0, proc.stderr
    available, reason, persistent = proc.stdout.splitlines()
    assert available == "False" and persistent == "False"
    assert reason.strip() and "Traceback" not in proc.stderr
    if "MPICC" in change:
        assert "MPICC=/nonexistent" in reason


def test_info_says_whether_the_c_timer_works(shared_cache: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hpcopt.cli", "info"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("C timer"))
    assert str(shared_cache) in row


def test_truth_script_runs_reference_and_core_side_by_side(shared_cache: Path) -> None:
    script = ROOT / "benchmarks" / "harness_truth.py"
    args = ["--rounds", "1", "--iters", "3", "--warmup", "1", "--maxbytes", "16"]
    proc = subprocess.run(
        [sys.executable, str(script), *args, "--ops", "pingpong,allreduce,alltoall"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if not line.startswith("#")]
    assert {(row[0], row[1]) for row in rows[1:]} == {
        (op, size) for op in ("pingpong", "allreduce", "alltoall") for size in ("8", "16")
    }
    assert proc.stdout.count("mpi4py per-call overhead") == 2

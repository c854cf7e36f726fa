"""Running a script, or a module of SPMD tests, under mpiexec with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "mpiexec", "run_mpi", "run_mpi_tests"]


def mpiexec() -> str:
    """The mpiexec that hpcopt itself would launch with, or skip."""
    from hpcopt.errors import UsageError
    from hpcopt.launch import find_mpiexec

    try:
        return find_mpiexec()
    except UsageError:
        pytest.skip("no mpiexec available")


def _run(
    ranks: int, argv: list[str], timeout: int, cwd: Path | None, env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), PYTHONUNBUFFERED="1", **(env or {}))
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout + 30, env=full_env,
        cwd=cwd or ROOT, check=False,
    )  # fmt: skip


def run_mpi(
    script: str | Path, ranks: int, *args: str, timeout: int = 120, cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python script args`` on ``ranks`` ranks; MPIEXEC_TIMEOUT kills a stuck job."""
    return _run(ranks, [str(script), *args], timeout, cwd, env)  # fmt: skip


def run_mpi_tests(
    module: Path, ranks: int, report_dir: Path, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run a module of ``@pytest.mark.mpi`` tests on ``ranks`` ranks (rank 0 prints; the
    other ranks write their reports to ``report_dir/rank{N}.txt``)."""
    runner = ROOT / "tests" / "helpers" / "mpi_pytest.py"
    argv = [str(runner), "--with-mpi", "-q", "-p", "no:cacheprovider", "-x", str(module)]
    env = {"HPCOPT_MPI_REPORT_DIR": str(report_dir)}
    return _run(ranks, argv, timeout, None, env)

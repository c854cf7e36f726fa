"""Running a script under mpiexec from a test, with a hard timeout (never hangs pytest)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mpiexec() -> str:
    """The mpiexec of the installed MPI, or skip."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        pytest.skip("no mpiexec available")
    return found


def run_mpi(
    script: str | Path, ranks: int, *args: str, timeout: int = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python script args`` on ``ranks`` ranks; MPIEXEC_TIMEOUT kills a stuck job."""
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), PYTHONUNBUFFERED="1")
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(script), *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        env=env,
        cwd=cwd or ROOT,
        check=False,
    )

"""The code base stays lint-clean (ruff) and type-checks (mypy), with the project's settings."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from mpirun import ROOT


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv" / "bin"))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_ruff_check_passes() -> None:
    proc = _run(_tool("ruff"), "check", "hpcopt", "kernels", "tests", "benchmarks", "jobs")
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_mypy_passes_on_the_package() -> None:
    _tool("mypy")
    proc = _run(sys.executable, "-m", "mypy", "--no-error-summary", "hpcopt")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]

"""The code base stays lint-clean (ruff, with the project's configuration)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from mpirun import ROOT


def test_ruff_check_passes() -> None:
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(ROOT / ".venv" / "bin"))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    proc = subprocess.run(
        [ruff, "check", "hpcopt", "kernels", "tests", "benchmarks"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]

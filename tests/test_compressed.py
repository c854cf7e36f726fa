"""Runs tests/mpi_compressed.py under mpiexec at several rank counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("mpi_compressed.py")
TIMEOUT = 120


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_compressed_paths(ranks: int) -> None:
    """Every compressed allreduce path matches its serial replay at ``ranks`` ranks."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found")
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(TIMEOUT))
    proc = subprocess.run(
        [mpiexec, "-n", str(ranks), sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 30,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert ", 0 failures" in proc.stdout  # bare "0 failures" also matches "10 failures"

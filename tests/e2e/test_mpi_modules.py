"""Runs each module of SPMD tests (tests/mpi) under mpiexec at 1 to 5 ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpirun import ROOT, run_mpi_tests

MODULES = sorted((ROOT / "tests" / "mpi").glob("test_*.py"))


def _failure_text(proc, report_dir: Path) -> str:
    """Rank 0's output and the reports of the ranks that failed, for the assertion message."""
    parts = [proc.stdout[-4000:], proc.stderr[-2000:]]
    for report in sorted(report_dir.glob("rank*.txt")):
        text = report.read_text(errors="replace")
        if "failed" in text or "Error" in text:
            parts.append(f"--- {report.stem} ---\n{text[-3000:]}")
    return "\n".join(parts)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.stem)
def test_spmd_module(module: Path, ranks: int, tmp_path: Path) -> None:
    proc = run_mpi_tests(module, ranks, tmp_path)
    assert proc.returncode == 0, _failure_text(proc, tmp_path)
    assert " passed" in proc.stdout and " failed" not in proc.stdout

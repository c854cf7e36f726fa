"""On-disk cache of reference solutions, keyed by problem spec, size and seed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "cache_path", "load", "store"]

VERSION = 2  # bump when generation or solvers change what a key means


def cache_dir() -> Path:
    """$HPCOPT_CACHE, else $XDG_CACHE_HOME/hpcopt, else ~/.cache/hpcopt."""
    if env := os.environ.get("HPCOPT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpcopt"


def cache_path(spec: str, size: int, seed: int) -> Path:
    """The file holding the reference for one (spec, size, seed)."""
    key = json.dumps({"spec": spec, "size": size, "seed": seed, "version": VERSION})
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir() / f"{spec.split(':')[0]}-{digest}.npz"


def load(path: Path) -> dict[str, Any] | None:
    """The arrays stored at path, or None when absent or unreadable."""
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def store(path: Path, **arrays: Any) -> None:
    """Write arrays atomically: concurrent writers and readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

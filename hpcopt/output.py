"""Safe output files: only regular files are replaced, a file being written is locked
against a second writer, and no command writes over a file it reads.

A writer holds an exclusive lock on ``.NAME.lock`` beside its target for as long as it
writes ``NAME.partial``; the finished file is renamed over the target only at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from hpcopt.errors import UsageError

__all__ = [
    "OutputLock",
    "check_not_reading",
    "check_output_path",
    "lock_output",
    "locked_output",
    "partial_path",
    "prepare_folder",
    "stamped_path",
]


def partial_path(path: Path) -> Path:
    """Where a run in progress writes: ``NAME.h5.partial``."""
    return path.with_name(path.name + ".partial")


def stamped_path(prefix: str, folder: Path = Path("results")) -> Path:
    """A default output name, ``FOLDER/PREFIX-YYYYmmdd-HHMMSS.h5``, with ``-2``, ``-3``, ...
    added when a run of the same second already took it."""
    stem = f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"
    path, n = folder / f"{stem}.h5", 1
    while any(p.exists() for p in (path, partial_path(path), _lock_path(path))):
        n += 1
        path = folder / f"{stem}-{n}.h5"
    return path


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _check_replaceable(target: Path, overwrite: bool) -> None:
    """UsageError unless ``target`` is absent, or a regular file and ``overwrite``."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"output {target}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UsageError(f"output {target} is {kind}; only regular files are replaced")
    if not overwrite:
        raise UsageError(f"output {target} exists; pass --overwrite to replace it")


def check_output_path(path: Path, overwrite: bool) -> None:
    """UsageError unless ``path`` (and its ``.partial``) can be written: a short enough name,
    a writable folder, nothing there but regular files when ``overwrite``."""
    prepare_folder(path)
    for target in (path, partial_path(path)):
        _check_replaceable(target, overwrite)


def prepare_folder(path: Path) -> None:
    """Check the file name's length and create its folder; UsageError when either fails."""
    if not path.name or len(os.fsencode(path.name)) + len(".partial") > 255:
        raise UsageError(f"output file name too long (at most 247 bytes): {path.name[:40]}...")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {parent} is not writable")


def check_not_reading(output: Path, inputs: Iterable[str | Path]) -> None:
    """UsageError when ``output`` (or its ``.partial``) is one of the files being read."""
    targets = [output, partial_path(output)]
    for source in inputs:
        for target in targets:
            if target.exists() and Path(source).exists() and os.path.samefile(source, target):
                raise UsageError(f"output {target} is also an input; write to another file")


class OutputLock:
    """An exclusive lock on ``.NAME.lock`` beside ``path``; a second holder is refused."""

    def __init__(self, path: Path) -> None:
        self.path = _lock_path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise UsageError naming the output another run is writing."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                target = self.path.name[1 : -len(".lock")]
                raise UsageError(
                    f"another run is writing {self.path.with_name(target)}; wait for it or "
                    "choose another output"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self._fd = fd
                    return
            os.close(fd)  # the holder removed the file meanwhile: lock the new one

    def release(self) -> None:
        """Remove the lock file and let go of the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def lock_output(path: Path, overwrite: bool) -> OutputLock:
    """Lock ``path`` against other writers, then check it can be written (UsageError)."""
    prepare_folder(path)
    lock = OutputLock(path)
    lock.acquire()
    try:
        check_output_path(path, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


@contextlib.contextmanager
def locked_output(path: Path, overwrite: bool) -> Iterator[OutputLock]:
    """:func:`lock_output` for the duration of a ``with`` block."""
    lock = lock_output(path, overwrite)
    try:
        yield lock
    finally:
        lock.release()

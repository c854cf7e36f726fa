"""The HDF5 log: a versioned schema, a crash-safe writer on rank 0, and a reader.

Layout (schema 1, documented in docs/schema.md)::

    /                         attrs: format="hpcopt-log", schema_version=1
    /runs/0000                attrs: meta (JSON object: run metadata)
    /runs/0000/records/000000 attrs: the record's scalar fields
                              datasets: its arrays (per-iteration per-rank times, ...)

A writer fills ``NAME.h5.partial`` and flushes after every record, then renames it
to ``NAME.h5`` when the run ends, so a killed run leaves every completed record.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcopt.errors import UsageError
from hpcopt.record import FIELDS

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "Log",
    "LogError",
    "LogWriter",
    "Run",
    "check_output_path",
    "merge_logs",
    "partial_path",
    "read_log",
]

FORMAT = "hpcopt-log"
SCHEMA_VERSION = 1
READ_TIMEOUT_S = 120.0  # a damaged file can send libhdf5 into a very long loop
REQUIRED_RECORD_FIELDS = tuple(name for name, f in FIELDS.items() if f.required)
INT_FIELDS = tuple(name for name, f in FIELDS.items() if f.kind is int)
Scalar = str | int | float | bool


class LogError(UsageError):
    """A log that cannot be read: wrong format, newer schema, damaged or incomplete."""


def partial_path(path: Path) -> Path:
    """Where a run in progress writes: ``NAME.h5.partial``."""
    return path.with_name(path.name + ".partial")


def check_output_path(path: Path, overwrite: bool) -> None:
    """UsageError unless ``path`` (and its ``.partial``) can be written."""
    for target in (path, partial_path(path)):
        if target.exists() and not overwrite:
            raise UsageError(f"output {target} exists; pass --overwrite to replace it")
        if target.is_dir():
            raise UsageError(f"output {target} is a directory")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {parent} is not writable")


def _attr_value(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


class LogWriter:
    """Appends runs and records to ``path.partial``; :meth:`close` renames it to ``path``."""

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        import h5py

        self.path = Path(path)
        check_output_path(self.path, overwrite)
        self._file = h5py.File(partial_path(self.path), "w")
        self._file.attrs["format"] = FORMAT
        self._file.attrs["schema_version"] = SCHEMA_VERSION
        self._runs = self._file.create_group("runs")
        self._run: Any = None
        self._file.flush()

    def start_run(self, meta: Mapping[str, Any]) -> None:
        """Begin a run whose records share ``meta``."""
        self._run = self._runs.create_group(f"{len(self._runs):04d}")
        self._run.attrs["meta"] = json.dumps(meta, default=str, sort_keys=True)
        self._run.create_group("records")
        self._file.flush()

    def append(
        self, fields: Mapping[str, Any], arrays: Mapping[str, Any] | None = None, *,
        growing: bool = False,
    ) -> None:  # fmt: skip
        """Write one record (scalar ``fields`` and ``arrays``) and flush it to disk; a
        ``growing`` record can be brought up to date with :meth:`update`."""
        if self._run is None:
            raise RuntimeError("start_run() must come before append()")
        records = self._run["records"]
        group = records.create_group(f"{len(records):06d}")
        self._write(group, fields, arrays or {}, growing)

    def update(self, fields: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> None:
        """Replace the fields and arrays of the last record (appended ``growing``) and flush:
        a run in progress keeps its trajectory in the log as it goes."""
        records = None if self._run is None else self._run["records"]
        if records is None or len(records) == 0:
            raise RuntimeError("update() needs a record appended with growing=True")
        group = records[sorted(records)[-1]]
        for key in [k for k in group.attrs if fields.get(k) is None]:
            del group.attrs[key]
        self._write(group, fields, arrays or {}, True)

    def _write(
        self, group: Any, fields: Mapping[str, Any], arrays: Mapping[str, Any], growing: bool
    ) -> None:
        for key, value in fields.items():
            if value is not None:
                group.attrs[key] = _attr_value(value)
        for key, value in arrays.items():
            data = np.asarray(value)
            if key in group:
                group[key].resize(data.shape)
                group[key][...] = data
            elif growing and data.ndim:
                group.create_dataset(key, data=data, maxshape=(None,) * data.ndim, chunks=True)
            else:
                group.create_dataset(key, data=data)
        self._file.flush()

    def close(self) -> Path:
        """Finish the file and move it to its final name."""
        self._file.close()
        os.replace(partial_path(self.path), self.path)
        return self.path


@dataclass
class Run:
    """One kernel invocation: its metadata, records and their arrays."""

    meta: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    arrays: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass
class Log:
    """A whole log file as read back; ``partial`` for a run that did not finish."""

    path: Path
    runs: list[Run]
    partial: bool

    def records(self) -> list[dict[str, Any]]:
        """Every record, with its run's ``tag`` and ``ranks`` filled in."""
        out = []
        for run in self.runs:
            for rec in run.records:
                merged = {"tag": run.meta.get("tag", ""), "ranks": run.meta.get("ranks")}
                merged.update(rec)
                out.append(merged)
        return out


def _scalar(value: Any) -> Scalar:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fields(where: str, attrs: Any) -> dict[str, Scalar]:
    """A record's attributes, each a str, int, float or bool."""
    fields = {}
    for key, raw in attrs.items():
        value = _scalar(raw)
        if not isinstance(value, (str, int, float, bool)):
            raise LogError(f"{where}: field {key!r} is not a scalar")
        fields[key] = value
    missing = [f for f in REQUIRED_RECORD_FIELDS if f not in fields]
    if missing:
        raise LogError(f"{where}: missing field(s) {', '.join(missing)}")
    wrong = [f for f in REQUIRED_RECORD_FIELDS if not isinstance(fields[f], str)]
    wrong += [f for f in INT_FIELDS if f in fields and type(fields[f]) is not int]
    if wrong:
        raise LogError(f"{where}: field(s) {', '.join(wrong)} of the wrong type")
    return fields


def _arrays(where: str, group: Any) -> dict[str, np.ndarray]:
    import h5py

    arrays = {}
    for key in group:
        item = group.get(key)
        if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biufcSUO":
            raise LogError(f"{where}: {key!r} is not a numeric or text dataset")
        arrays[key] = np.asarray(item[()])
    return arrays


def _read_run(name: str, group: Any, partial: bool = False) -> Run:
    """One run; in a ``.partial`` log an unfinished last record is left out."""
    import h5py

    if not isinstance(group, h5py.Group):
        raise LogError(f"run {name} is not a group")
    try:
        meta = json.loads(str(_scalar(group.attrs["meta"])))
    except (KeyError, ValueError, TypeError):
        raise LogError(f"run {name}: missing or unreadable metadata") from None
    if not isinstance(meta, dict):
        raise LogError(f"run {name}: metadata is not an object")
    if not isinstance(meta.get("tag", ""), str) or type(meta.get("ranks", 0)) is not int:
        raise LogError(f"run {name}: tag or ranks of the wrong type in metadata")
    run = Run(meta)
    records = group.get("records")
    if not isinstance(records, h5py.Group):
        raise LogError(f"run {name}: no records group")
    keys = sorted(records)
    for i, key in enumerate(keys):
        where = f"run {name} record {key}"
        try:
            rec = records.get(key)
            if not isinstance(rec, h5py.Group):
                raise LogError(f"{where} is not a group")
            fields, arrays = _fields(where, rec.attrs), _arrays(where, rec)
        except LogError:
            if partial and i == len(keys) - 1:
                break
            raise
        run.records.append(fields)
        run.arrays.append(arrays)
    return run


def _open(path: Path) -> Any:
    """Open read-only, without file locks where HDF5 allows it (a writer may hold them)."""
    import h5py

    # Inside the writer's own process HDF5 insists on matching lock flags.
    try:
        return h5py.File(path, "r", locking=False)
    except OSError:
        return h5py.File(path, "r")


def _read_checked(path: Path) -> Log:
    """Read and validate in this process."""
    import h5py

    partial = path.name.endswith(".partial")
    try:
        with _open(path) as f:
            fmt = _scalar(f.attrs.get("format", ""))
            version = _scalar(f.attrs.get("schema_version", -1))
            if fmt != FORMAT:
                raise LogError(f"{path}: not an hpcopt log (format {fmt!r})")
            if type(version) is not int or version < 1:
                raise LogError(f"{path}: invalid schema version {version!r}")
            if version > SCHEMA_VERSION:
                raise LogError(
                    f"{path}: schema version {version} is newer than this hpcopt reads "
                    f"({SCHEMA_VERSION}); upgrade hpcopt"
                )
            runs_group = f.get("runs")
            if not isinstance(runs_group, h5py.Group):
                raise LogError(f"{path}: no runs group")
            runs = [_read_run(n, runs_group.get(n), partial) for n in sorted(runs_group)]
    except LogError as exc:
        message = str(exc)
        raise LogError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except Exception as exc:  # h5py raises many types for damaged files; all mean "unreadable"
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise LogError(f"{path}: unreadable log ({reason})") from None
    return Log(path, runs, partial)


def _may_fork() -> bool:
    """Fork only where it is safe: POSIX, and not inside an MPI process."""
    mpi = sys.modules.get("mpi4py.MPI")
    in_mpi = mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized()
    return hasattr(os, "fork") and not in_mpi


def _read_in_child(path: Path) -> Log:
    """Read in a forked child: libhdf5 can crash on damaged files, and then only it dies."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            result: tuple[str, Any] = ("ok", _read_checked(path))
        except LogError as exc:
            result = ("error", str(exc))
        except BaseException as exc:
            result = ("error", f"{path}: unreadable log ({type(exc).__name__})")
        try:
            with os.fdopen(wfd, "wb") as out:
                pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            os._exit(0)
    os.close(wfd)
    data = _collect(rfd, pid, path)
    _, status = os.waitpid(pid, 0)
    if not data:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else "no result"
        raise LogError(f"{path}: unreadable log (the HDF5 library failed on it: {how})")
    kind, payload = pickle.loads(data)
    if kind == "error":
        raise LogError(payload)
    return payload


def _collect(rfd: int, pid: int, path: Path) -> bytes:
    """The child's whole answer; LogError (child killed) if it takes over READ_TIMEOUT_S."""
    deadline, chunks = time.monotonic() + READ_TIMEOUT_S, list[bytes]()
    with os.fdopen(rfd, "rb", buffering=0) as inp:
        while True:
            ready, _, _ = select.select([inp], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise LogError(
                    f"{path}: unreadable log (the HDF5 library did not finish reading it "
                    f"in {READ_TIMEOUT_S:g} s)"
                )
            chunk = inp.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def read_log(path: str | Path) -> Log:
    """Read and validate a log (final or ``.partial``); LogError with one line otherwise."""
    path = Path(path)
    if not path.exists():
        raise LogError(f"{path}: no such file")
    return _read_in_child(path) if _may_fork() else _read_checked(path)


def merge_logs(sources: Iterable[str | Path], dest: str | Path, *, overwrite: bool = False) -> Path:
    """Copy every run of ``sources`` into one new log at ``dest``."""
    writer = LogWriter(dest, overwrite=overwrite)
    for source in sources:
        for run in read_log(source).runs:
            writer.start_run(run.meta)
            for fields, arrays in zip(run.records, run.arrays, strict=True):
                writer.append(fields, arrays)
    return writer.close()

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
from hpcopt.output import check_not_reading, check_output_path, lock_output, partial_path
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


def _attr_value(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


class LogWriter:
    """Appends runs and records to ``path.partial``; :meth:`close` renames it to ``path``.

    The output is locked against other writers while this one writes, and an existing
    ``path`` (a regular file, with ``overwrite``) is only replaced by the finished log.
    ``partial`` marks a log whose runs did not all finish (a merge of partial logs).
    :meth:`resume` continues the last run of a killed run's ``.partial`` instead.
    """

    def __init__(
        self, path: str | Path, *, overwrite: bool = False, partial: bool = False,
        resume: bool = False,
    ) -> None:  # fmt: skip
        self.path = Path(path)
        self._run: Any = None
        self._lock = lock_output(self.path, overwrite or resume)
        try:
            self._file = self._resume() if resume else self._create(partial)
        except OSError as exc:
            self._lock.release()
            reason = str(exc).split("\n")[0] or type(exc).__name__
            raise UsageError(f"cannot write {partial_path(self.path)}: {reason}") from None
        except BaseException:
            self._lock.release()
            raise

    @classmethod
    def resume(cls, partial: str | Path) -> LogWriter:
        """Continue writing the last run of ``NAME.partial`` (a killed run)."""
        partial = Path(partial)
        if not partial.name.endswith(".partial"):
            raise UsageError(f"{partial}: --resume takes the .partial log of a killed run")
        final = partial.with_name(partial.name.removesuffix(".partial"))
        if final.exists():
            raise UsageError(f"{final} exists: that run finished; resume only a .partial alone")
        return cls(final, resume=True)

    def _create(self, partial: bool) -> Any:
        import h5py

        f = h5py.File(partial_path(self.path), "w")
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        if partial:
            f.attrs["partial"] = True
        f.create_group("runs")
        f.flush()
        return f

    def _resume(self) -> Any:
        """Open the partial file for appending; drop an unfinished last record."""
        import h5py

        f = h5py.File(partial_path(self.path), "a")
        runs = f.get("runs")
        if f.attrs.get("format") != FORMAT or not isinstance(runs, h5py.Group) or not len(runs):
            f.close()
            raise UsageError(f"{partial_path(self.path)}: not a partial hpcopt log with a run")
        self._run = runs[sorted(runs)[-1]]
        records = self._run["records"]
        for key in sorted(records)[-1:]:
            try:
                _record(key, records.get(key))
            except LogError:
                del records[key]
        return f

    def start_run(self, meta: Mapping[str, Any]) -> None:
        """Begin a run whose records share ``meta``."""
        runs = self._file["runs"]
        self._run = runs.create_group(f"{len(runs):04d}")
        self._run.attrs["meta"] = json.dumps(meta, default=str, sort_keys=True)
        self._run.create_group("records")
        self._file.flush()

    def continue_run(self, resumed: Mapping[str, Any]) -> None:
        """Note in the resumed run's metadata when and how it was continued."""
        meta = json.loads(str(_scalar(self._run.attrs["meta"])))
        meta.setdefault("resumed", []).append(dict(resumed))
        self._run.attrs["meta"] = json.dumps(meta, default=str, sort_keys=True)
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
        """Finish the file, move it to its final name and let other writers in."""
        self._file.close()
        os.replace(partial_path(self.path), self.path)
        self._lock.release()
        return self.path


@dataclass
class Run:
    """One kernel invocation: its metadata, records and their arrays."""

    meta: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    arrays: list[dict[str, np.ndarray]] = field(default_factory=list)


@dataclass
class Log:
    """A whole log file as read back; ``partial`` for a run that did not finish.

    ``problems`` names the records that could not be read (they are left out).
    """

    path: Path
    runs: list[Run]
    partial: bool
    problems: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """Every record, with its run's ``tag`` and ``ranks`` filled in."""
        out = []
        for run in self.runs:
            for rec in run.records:
                merged = {"tag": run.meta.get("tag", ""), "ranks": run.meta.get("ranks")}
                merged.update(rec)
                out.append(merged)
        return out

    def to_dataframe(self, samples: bool = False) -> Any:
        """pandas: one row per record, or (``samples``) one per record, rank and iteration."""
        from hpcopt.frames import log_frame

        return log_frame(self, samples)


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


def _record(where: str, rec: Any) -> tuple[dict[str, Scalar], dict[str, np.ndarray]]:
    """One record's fields and arrays; LogError (never another error) when it is damaged."""
    import h5py

    if not isinstance(rec, h5py.Group):
        raise LogError(f"{where} is not a group")
    try:
        return _fields(where, rec.attrs), _arrays(where, rec)
    except LogError:
        raise
    except Exception as exc:  # h5py raises many types for damaged data
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise LogError(f"{where}: unreadable ({reason})") from None


def _read_run(name: str, group: Any, partial: bool, problems: list[str]) -> Run:
    """One run. A damaged record is left out and named in ``problems``; in a partial log an
    unfinished last record is left out silently."""
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
            fields, arrays = _record(where, records.get(key))
        except LogError as exc:
            if not (partial and i == len(keys) - 1):
                problems.append(str(exc))
            continue
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

    partial, problems = path.name.endswith(".partial"), list[str]()
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
            partial = partial or bool(_scalar(f.attrs.get("partial", False)))
            runs = _read_runs(runs_group, partial, problems)
    except LogError as exc:
        message = str(exc)
        raise LogError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except Exception as exc:  # h5py raises many types for damaged files; all mean "unreadable"
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise LogError(f"{path}: unreadable log ({reason})") from None
    return Log(path, runs, partial, [f"{path}: {p}" for p in problems])


def _read_runs(runs_group: Any, partial: bool, problems: list[str]) -> list[Run]:
    """Every readable run; a run whose metadata is damaged is left out and named."""
    runs = []
    for name in sorted(runs_group):
        try:
            runs.append(_read_run(name, runs_group.get(name), partial, problems))
        except LogError as exc:
            problems.append(str(exc))
    if problems and not any(run.records for run in runs):
        raise LogError(problems[0])
    return runs


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
    """Copy every run of ``sources`` into one new log at ``dest`` (never one of them).

    The result is marked partial when any source is.
    """
    sources, dest = list(sources), Path(dest)
    check_not_reading(dest, sources)
    logs = [read_log(source) for source in sources]
    writer = LogWriter(dest, overwrite=overwrite, partial=any(log.partial for log in logs))
    for log in logs:
        for run in log.runs:
            writer.start_run(run.meta)
            for fields, arrays in zip(run.records, run.arrays, strict=True):
                writer.append(fields, arrays)
    return writer.close()

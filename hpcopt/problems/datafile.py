"""Data files for the linear models: LIBSVM/svmlight text and NumPy ``.npz``, read into dense
rows or into :class:`SparseRows` (CSR) when most entries are zero.

svmlight lines are ``LABEL INDEX:VALUE ...`` with an optional ``qid:N`` (ignored) and a
``# comment``; indices are 1-based unless some index is 0 (then 0-based, as scikit-learn's
``zero_based="auto"``). ``.npz`` files hold ``y`` and either a dense ``X`` or the CSR arrays
``data``, ``indices``, ``indptr``, ``shape`` (the layout of ``scipy.sparse.save_npz``).
A malformed file is a UsageError of one line naming the file and, for text, the line.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hpcopt.errors import UsageError

__all__ = ["DataFile", "SparseRows", "concat_rows", "read_data"]

DENSE_ABOVE = 0.25  # keep rows dense when more than this share of the entries is nonzero


class SparseRows:
    """Rows in CSR form with the operations the linear models use: A@x, r@A, A[rows]."""

    __array_ufunc__ = None  # lets ``ndarray @ SparseRows`` reach __rmatmul__

    def __init__(
        self, indptr: NDArray[np.int64], indices: NDArray[np.int64], values: Any, dim: int
    ) -> None:
        self.indptr, self.indices = indptr, indices
        self.values = np.asarray(values, dtype=np.float64)
        self.dim = dim
        self.rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __matmul__(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.bincount(self.rows, self.values * x[self.indices], minlength=len(self))
        return out.astype(np.float64, copy=False)

    def __rmatmul__(self, r: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.bincount(self.indices, self.values * r[self.rows], minlength=self.dim)
        return out.astype(np.float64, copy=False)

    def __getitem__(self, rows: Any) -> SparseRows:
        picked = np.arange(len(self))[rows]
        starts, lengths = self.indptr[picked], np.diff(self.indptr)[picked]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(indptr, self.indices[take], self.values[take], self.dim)

    def todense(self) -> NDArray[np.float64]:
        """The rows as a dense (n, d) array."""
        dense = np.zeros((len(self), self.dim))
        dense[self.rows, self.indices] = self.values
        return dense

    @staticmethod
    def concat(parts: Sequence[SparseRows]) -> SparseRows:
        """Stack the rows of several matrices of one width."""
        ends = np.cumsum([0] + [int(p.indptr[-1]) for p in parts[:-1]])
        tails = [p.indptr[1:] + e for p, e in zip(parts, ends, strict=True)]
        indptr = np.concatenate([[0], *tails])
        return SparseRows(
            indptr.astype(np.int64),
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.values for p in parts]),
            parts[0].dim,
        )


def concat_rows(parts: Sequence[Any]) -> Any:
    """Stack dense or sparse row blocks."""
    if isinstance(parts[0], SparseRows):
        return SparseRows.concat(parts)
    return np.concatenate(parts)


@dataclass(frozen=True)
class DataFile:
    """A data set as read: rows (dense or sparse), targets, and a digest of the file."""

    a: Any
    y: NDArray[np.float64]
    dim: int
    digest: str


def _csr(indptr: Any, indices: Any, values: Any, dim: int) -> Any:
    """Dense rows when dense enough, else SparseRows."""
    rows = SparseRows(np.asarray(indptr, np.int64), np.asarray(indices, np.int64), values, dim)
    n = len(rows)
    return rows.todense() if n and len(rows.values) > DENSE_ABOVE * n * dim else rows


def _parse_line(path: Path, number: int, line: str) -> tuple[float, list[int], list[float]] | None:
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    label, *items = text.split()
    cols, vals = [], []
    try:
        target = float(label)
    except ValueError:
        raise UsageError(f"{path}:{number}: label {label!r} is not a number") from None
    for item in items:
        key, colon, value = item.partition(":")
        if key == "qid":
            continue
        try:
            col, val = int(key), float(value)
        except ValueError:
            col, val = -1, 0.0
        if not colon or col < 0 or not np.isfinite(val):
            raise UsageError(f"{path}:{number}: {item!r} is not INDEX:VALUE")
        cols.append(col)
        vals.append(val)
    if len(set(cols)) != len(cols):
        raise UsageError(f"{path}:{number}: a feature index appears twice")
    if not np.isfinite(target):
        raise UsageError(f"{path}:{number}: label {label!r} is not finite")
    return target, cols, vals


def _read_svmlight(path: Path) -> tuple[Any, NDArray[np.float64], int]:
    labels: list[float] = []
    indptr, cols, vals = [0], list[int](), list[float]()
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                parsed = _parse_line(path, number, line)
                if parsed is None:
                    continue
                labels.append(parsed[0])
                cols += parsed[1]
                vals += parsed[2]
                indptr.append(len(cols))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (svmlight expected)") from None
    if not labels:
        raise UsageError(f"{path}: no data rows")
    indices = np.asarray(cols, dtype=np.int64)
    if indices.size and indices.min() > 0:
        indices -= 1  # 1-based, as LIBSVM writes them
    dim = int(indices.max()) + 1 if indices.size else 1
    return _csr(indptr, indices, vals, dim), np.asarray(labels), dim


def _read_npz(path: Path) -> tuple[Any, NDArray[np.float64], int]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: not a readable .npz file ({exc})") from None
    if "y" not in arrays:
        raise UsageError(f"{path}: no array 'y' (the targets)")
    y = np.asarray(arrays["y"], dtype=np.float64).reshape(-1)
    if "X" in arrays:
        a = np.asarray(arrays["X"], dtype=np.float64)
        if a.ndim != 2 or len(a) != len(y):
            raise UsageError(f"{path}: X must be 2-D with one row per target")
        rows, dim = a, a.shape[1]
    elif {"data", "indices", "indptr", "shape"} <= set(arrays):
        n, dim = (int(v) for v in arrays["shape"])
        indptr = arrays["indptr"]
        if n != len(y) or len(indptr) != n + 1 or int(indptr[-1]) != len(arrays["data"]):
            raise UsageError(f"{path}: CSR arrays and y do not agree in size")
        if arrays["indices"].size and not 0 <= int(arrays["indices"].min()) <= int(
            arrays["indices"].max()) < dim:  # fmt: skip
            raise UsageError(f"{path}: a column index is outside the shape")
        rows = _csr(indptr, arrays["indices"], arrays["data"], dim)
    else:
        raise UsageError(f"{path}: needs X (dense) or data, indices, indptr, shape (CSR)")
    if not len(y):
        raise UsageError(f"{path}: no data rows")
    values = rows if isinstance(rows, np.ndarray) else rows.values
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(y))):
        raise UsageError(f"{path}: non-finite values")
    return rows, y, dim


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime: float, size: int) -> DataFile:
    file = Path(path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:24]
    reader = _read_npz if file.suffix == ".npz" else _read_svmlight
    a, y, dim = reader(file)
    return DataFile(a, y, dim, digest)


def read_data(path: str | Path) -> DataFile:
    """The data set in ``path`` (svmlight text, or ``.npz``); read once per process."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError as exc:
        raise UsageError(f"data file {file}: {exc.strerror}") from None
    if not file.is_file():
        raise UsageError(f"data file {file} is not a regular file")
    return _read_cached(str(file.resolve()), stat.st_mtime, stat.st_size)

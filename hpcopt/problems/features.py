"""Feature matrices with a few nonzeros per row plus a shared low-rank part, in NumPy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["Features"]


class Features:
    """Rows a_j = s_j + Uᵀc_j: s_j sparse (k nonzeros, or dense) and U (r×d) shared by all rows.

    ``A @ x`` and ``r @ A`` give A·x and Aᵀ·r; ``A[idx]`` selects rows.
    """

    __array_ufunc__ = None  # lets ``ndarray @ Features`` reach __rmatmul__

    def __init__(
        self,
        cols: NDArray[np.int32] | None,
        vals: NDArray[np.float64],
        coef: NDArray[np.float64],
        basis: NDArray[np.float64],
    ) -> None:
        self.cols = cols
        self.vals = vals
        self.coef = coef
        self.basis = basis
        self.dim = basis.shape[1]

    def __len__(self) -> int:
        return self.vals.shape[0]

    def __getitem__(self, rows: NDArray[np.intp] | slice) -> Features:
        cols = None if self.cols is None else self.cols[rows]
        return Features(cols, self.vals[rows], self.coef[rows], self.basis)

    def __matmul__(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.cols is None:
            sparse = self.vals @ x
        else:
            sparse = np.einsum("ij,ij->i", self.vals, x[self.cols])
        return sparse + self.coef @ (self.basis @ x)

    def __rmatmul__(self, r: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.cols is None:
            out = r @ self.vals
        else:
            weights = (self.vals * r[:, None]).ravel()
            out = np.bincount(self.cols.ravel(), weights=weights, minlength=self.dim).astype(
                np.float64, copy=False
            )
        return out + (r @ self.coef) @ self.basis

    def todense(self) -> NDArray[np.float64]:
        """The rows as a dense (n, d) array: for small problems and tests."""
        if self.cols is None:
            dense = self.vals.copy()
        else:
            dense = np.zeros((len(self), self.dim))
            rows = np.repeat(np.arange(len(self)), self.cols.shape[1])
            np.add.at(dense, (rows, self.cols.ravel()), self.vals.ravel())
        return dense + self.coef @ self.basis

    @staticmethod
    def concat(parts: Sequence[Features]) -> Features:
        """Stack the rows of several matrices that share one basis."""
        cols = None if parts[0].cols is None else np.concatenate([p.cols for p in parts])
        vals = np.concatenate([p.vals for p in parts])
        coef = np.concatenate([p.coef for p in parts])
        return Features(cols, vals, coef, parts[0].basis)

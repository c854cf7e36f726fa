"""Writes the small real data files the tests use, from data sets that scikit-learn ships.

- ``breast_cancer.svm``: the Wisconsin diagnostic breast cancer data (569 rows, 30 features,
  labels 0 = malignant, 1 = benign), each feature standardized to mean 0 and variance 1,
  written as svmlight text with 6 significant digits and 1-based indices.
- ``diabetes.npz``: the diabetes progression data (442 rows, 10 features, a real target),
  features standardized, target centred and divided by its standard deviation; arrays ``X``
  and ``y`` (float32 to keep the file small).

scikit-learn is needed only to run this script again (``pip install scikit-learn``); hpcopt
reads the files without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes

HERE = Path(__file__).resolve().parent


def standardize(x: np.ndarray) -> np.ndarray:
    """Each column to mean 0, variance 1."""
    return (x - x.mean(axis=0)) / x.std(axis=0)


def main() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    with open(HERE / "breast_cancer.svm", "w", encoding="ascii") as f:
        for row, label in zip(standardize(x), y, strict=True):
            items = " ".join(f"{j + 1}:{v:.6g}" for j, v in enumerate(row) if v != 0)
            f.write(f"{int(label)} {items}\n")
    x, y = load_diabetes(return_X_y=True)
    target = (y - y.mean()) / y.std()
    np.savez_compressed(
        HERE / "diabetes.npz", X=standardize(x).astype(np.float32), y=target.astype(np.float32)
    )


if __name__ == "__main__":
    main()

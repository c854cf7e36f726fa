"""Data files for the linear models: svmlight text and .npz, sparse rows, sharding, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.problems import get_problem
from hpcopt.problems.datafile import SparseRows, read_data

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCOPT_CACHE", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "d.svm") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_svmlight_rows_comments_qid_and_one_based_indices(tmp_path):
    path = write(tmp_path, "# header\n1 1:0.5 3:2 # note\n\n-1 qid:7 2:-1\n1\n")
    data = read_data(path)
    dense = data.a if isinstance(data.a, np.ndarray) else data.a.todense()
    np.testing.assert_array_equal(dense, [[0.5, 0, 2], [0, -1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(data.y, [1, -1, 1])
    assert data.dim == 3


def test_svmlight_with_an_index_zero_is_zero_based(tmp_path):
    data = read_data(write(tmp_path, "0 0:1 2:3\n1 1:4\n"))
    np.testing.assert_array_equal(np.asarray(data.a), [[1, 0, 3], [0, 4, 0]])


@pytest.mark.parametrize(
    "text,where,message",
    [
        ("1 1:2\n1 3:x\n", 2, "'3:x' is not INDEX:VALUE"),
        ("1 1:2\nyes 1:1\n", 2, "label 'yes' is not a number"),
        ("1 1:2 1:3\n", 1, "a feature index appears twice"),
        ("1 -4:2\n", 1, "'-4:2' is not INDEX:VALUE"),
        ("1 1:2\n1 2:nan\n", 2, "'2:nan' is not INDEX:VALUE"),
        ("1 1:2\n\n1 5\n", 3, "'5' is not INDEX:VALUE"),
    ],
)
def test_malformed_svmlight_names_the_line(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        read_data(path)
    assert str(err.value) == f"{path}:{where}: {message}"


def test_npz_dense_and_csr_agree(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 40)) * (rng.random((30, 40)) < 0.1)
    y = rng.standard_normal(30)
    np.savez(tmp_path / "dense.npz", X=x, y=y)
    nz = np.nonzero(x)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(nz[0], minlength=30))])
    np.savez(tmp_path / "csr.npz", data=x[nz], indices=nz[1], indptr=indptr, shape=x.shape, y=y)
    dense, sparse = read_data(tmp_path / "dense.npz"), read_data(tmp_path / "csr.npz")
    assert isinstance(sparse.a, SparseRows)  # 10 % nonzero: kept sparse
    np.testing.assert_array_equal(sparse.a.todense(), x)
    np.testing.assert_array_equal(dense.a, x)
    v, r = rng.standard_normal(40), rng.standard_normal(30)
    np.testing.assert_allclose(sparse.a @ v, x @ v)
    np.testing.assert_allclose(r @ sparse.a, r @ x)
    rows = np.array([7, 2, 2, 29])
    np.testing.assert_array_equal(sparse.a[rows].todense(), x[rows])
    both = SparseRows.concat([sparse.a[:10], sparse.a[10:]])
    np.testing.assert_array_equal(both.todense(), x)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"X": np.ones((3, 2))}, "no array 'y'"),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, "one row per target"),
        ({"y": np.ones(2)}, "needs X (dense) or data, indices, indptr, shape"),
        ({"X": np.full((2, 2), np.inf), "y": np.ones(2)}, "non-finite values"),
        (
            {"data": [1.0], "indices": [5], "indptr": [0, 1], "shape": [1, 3], "y": [1.0]},
            "a column index is outside the shape",
        ),
    ],
)
def test_bad_npz_files_are_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=re.escape(message)):
        read_data(tmp_path / "bad.npz")


def test_the_shipped_breast_cancer_file():
    data = read_data(DATA / "breast_cancer.svm")
    assert data.a.shape == (569, 30) and sorted(set(data.y)) == [0.0, 1.0]
    np.testing.assert_allclose(data.a.mean(axis=0), 0, atol=1e-5)  # standardized


def test_logreg_on_a_file_maps_two_labels_and_reaches_its_optimum(tmp_path):
    spec = f"logreg:data={DATA / 'breast_cancer.svm'},lam=1e-2"
    shards = [get_problem(spec, rank=r, size=3) for r in range(3)]
    assert [s.n_local for s in shards] == [190, 190, 189]
    assert set(shards[0].shard.y) <= {-1.0, 1.0}
    ref = shards[0].reference()
    assert np.linalg.norm(shards[0].full_grad(ref.x_star)) < 1e-8
    assert shards[1].local_smoothness() <= ref.L * 3  # a shard bound, near the global one
    path = write(tmp_path, "0 1:1\n1 1:2\n2 1:3\n")
    with pytest.raises(UsageError, match="has 3 distinct labels"):
        get_problem(f"logreg:data={path}", rank=0, size=1)


def test_shuffled_shards_partition_the_rows_by_a_seeded_permutation():
    spec = f"lstsq:data={DATA / 'diabetes.npz'},shard=shuffle"
    targets = [get_problem(spec, rank=r, size=4, seed=1).shard.y for r in range(4)]
    data = read_data(DATA / "diabetes.npz")
    assert sorted(np.concatenate(targets)) == sorted(data.y)
    again = get_problem(spec, rank=2, size=4, seed=1).shard.y
    np.testing.assert_array_equal(again, targets[2])
    contiguous = get_problem(f"lstsq:data={DATA / 'diabetes.npz'}", rank=0, size=4).shard.y
    np.testing.assert_array_equal(contiguous, data.y[:111])
    assert not np.array_equal(targets[0], contiguous)


@pytest.mark.parametrize(
    "options,message",
    [
        (",d=3", "d do not apply"),
        (",shard=rows", "shard='rows' is not one of"),
        ("x", "no such file|No such file"),
    ],
)
def test_file_options_are_checked(options, message):
    with pytest.raises(UsageError, match=message):
        get_problem(f"lstsq:data={DATA / 'diabetes.npz'}{options}", rank=0, size=1)


def test_a_changed_file_does_not_reuse_a_cached_reference(tmp_path):
    path = write(tmp_path, "1 1:1 2:0.5\n-1 1:-1\n1 2:2\n")
    before = get_problem(f"logreg:data={path},lam=0.1", rank=0, size=1).reference().f_star
    path.write_text("1 1:1 2:0.5\n1 1:-1\n1 2:2\n")
    after = get_problem(f"logreg:data={path},lam=0.1", rank=0, size=1).reference().f_star
    assert before != after

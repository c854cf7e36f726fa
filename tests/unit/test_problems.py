"""Tests for the sharded problems: gradients, optima, cache, determinism, heterogeneity, specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.problems import (
    LeastSquares,
    Problem,
    available,
    get_problem,
    register,
)
from hpcopt.problems import cache as cache_mod
from hpcopt.problems import linear as linear_mod

DATA = Path(__file__).resolve().parents[1] / "data"
SMALL = {
    "lstsq": "lstsq:d=40,n=300,nnz=8,lowrank=3",
    "lstsq_dense": "lstsq:d=20,n=300,nnz=20,lowrank=2,hetero=0.7",
    "logreg": "logreg:d=50,n=400,nnz=6,lowrank=3,hetero=0.3",
    "logreg_dense": "logreg:d=12,n=200,nnz=12,lowrank=0",
    "mlp": "mlp:d=5,hidden=7,classes=3,n=300",
    "mlp_relu": "mlp:d=5,hidden=7,classes=3,n=300,act=relu,hetero=0.5",
    "mlp_deep": "mlp:d=5,hidden=6,classes=3,n=300,layers=3",
    "logreg_file": f"logreg:data={DATA / 'breast_cancer.svm'},lam=1e-3",
    "lstsq_file": f"lstsq:data={DATA / 'diabetes.npz'},shard=shuffle",
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCOPT_CACHE", str(tmp_path / "cache"))


def _point(p: Problem, scale: float = 0.3) -> np.ndarray:
    return p.init_point() + scale * np.random.default_rng(1).standard_normal(p.dim)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_gradient_matches_finite_differences(key):
    p = get_problem(SMALL[key], rank=1, size=3, seed=2)
    x = _point(p)
    v = np.random.default_rng(3).standard_normal(p.dim)
    batch = p.sample_batch(np.random.default_rng(4), 17)
    eps = 1e-6
    for b in (None, batch):
        fd = (p.loss_local(x + eps * v, b) - p.loss_local(x - eps * v, b)) / (2 * eps)
        assert fd == pytest.approx(p.grad_local(x, b) @ v, rel=1e-6, abs=1e-9)
    f, g = p.loss_grad_local(x)
    assert f == p.loss_local(x) and np.array_equal(g, p.grad_local(x))


@pytest.mark.parametrize("key", sorted(SMALL))
def test_global_objective_is_mean_of_shard_objectives(key):
    size = 3
    ranks = [get_problem(SMALL[key], rank=r, size=size) for r in range(size)]
    x = _point(ranks[0])
    assert sum(p.n_local for p in ranks) == ranks[0].n_global
    assert ranks[0].full_loss(x) == pytest.approx(np.mean([p.loss_local(x) for p in ranks]))
    mean_grad = np.mean([p.grad_local(x) for p in ranks], axis=0)
    np.testing.assert_allclose(ranks[2].full_grad(x), mean_grad, rtol=1e-10, atol=1e-14)


def test_float32_points_are_accepted():
    p = get_problem(SMALL["logreg"], rank=0, size=2)
    x = _point(p)
    g = p.grad_local(x.astype(np.float32))
    assert g.dtype == np.float64 and g.shape == (p.dim,)
    assert p.loss_local(x.astype(np.float32)) == pytest.approx(p.loss_local(x), rel=1e-6)


def _dense(a) -> np.ndarray:
    return a.todense() if hasattr(a, "todense") else a


def _normal_equations(p):
    data, w = p.union
    a = data.a.todense()
    h = a.T @ (w[:, None] * a) + p.lam * np.eye(p.dim)
    return h, a.T @ (w * data.y)


@pytest.mark.parametrize("spec", [SMALL["lstsq"], SMALL["lstsq_dense"], "lstsq:d=30,n=90,lam=0"])
def test_least_squares_optimum_solves_normal_equations(spec):
    p = get_problem(spec, rank=0, size=3)
    h, rhs = _normal_equations(p)
    x_direct = np.linalg.solve(h, rhs)
    np.testing.assert_allclose(p.x_star, x_direct, rtol=1e-8, atol=1e-10)
    assert p.f_star == pytest.approx(p.full_loss(x_direct), rel=1e-12, abs=1e-15)
    assert np.linalg.norm(p.full_grad(p.x_star)) <= 1e-9 * np.linalg.norm(p.full_grad(0 * h[0]))


def test_least_squares_underdetermined_without_ridge_interpolates():
    p = get_problem("lstsq:d=60,n=20,nnz=60,lam=0", rank=0, size=2)
    a = p.union[0].a.todense()
    np.testing.assert_allclose(p.x_star, np.linalg.pinv(a) @ p.union[0].y, atol=1e-8)
    assert p.f_star == pytest.approx(0.0, abs=1e-18)


def test_smoothness_bounds_every_shard_and_default_lr():
    p = get_problem(SMALL["logreg_dense"], rank=0, size=2)
    for r in range(2):
        q = get_problem(SMALL["logreg_dense"], rank=r, size=2)
        a = q.shard.a.todense()
        top = np.linalg.eigvalsh(a.T @ a / q.n_local).max() / 4 + q.lam
        assert top <= p.L * (1 + 1e-6)
    assert p.default_lr() == 1.0 / p.L and p.mu == p.lam
    x = p.init_point()
    values = [p.full_loss(x)]
    for _ in range(20):
        x = x - p.default_lr() * p.full_grad(x)
        values.append(p.full_loss(x))
    assert np.all(np.diff(values) < 0) and values[-1] >= p.f_star


def test_logreg_reference_is_optimal_and_cached(tmp_path, monkeypatch):
    spec = "logreg:d=2000,n=512,nnz=10,lowrank=4,hetero=0.5"
    p = get_problem(spec, rank=0, size=4, seed=3)
    x0 = p.init_point()
    assert np.linalg.norm(p.full_grad(p.x_star)) <= 1e-9 * np.linalg.norm(p.full_grad(x0))
    assert p.f_star == pytest.approx(p.full_loss(p.x_star), rel=1e-14)
    files = list((tmp_path / "cache").glob("logreg-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("the cached reference should have been used")

    monkeypatch.setattr(linear_mod, "newton", fail)
    q = get_problem(spec, rank=2, size=4, seed=3)
    assert q.f_star == p.f_star and q.L == p.L and np.array_equal(q.x_star, p.x_star)
    with pytest.raises(AssertionError, match="cached reference"):
        get_problem(spec, rank=2, size=4, seed=4).reference()  # another seed: another key
    with pytest.raises(AssertionError, match="cached reference"):
        get_problem(spec, rank=0, size=2, seed=3).reference()  # another size: another key
    files[0].write_bytes(b"truncated")
    assert cache_mod.load(files[0]) is None


def test_reference_with_comm_lets_rank_zero_solve_first():
    events: list[str] = []

    class FakeComm:
        def __init__(self, rank):
            self.rank = rank

        def Get_rank(self):
            return self.rank

        def Barrier(self):
            events.append(f"barrier{self.rank}")

    def solving(p):
        compute = p.compute_reference

        def logged():
            events.append(f"solve{p.rank}")
            return compute()

        p.compute_reference = logged
        return p

    p0 = solving(get_problem(SMALL["logreg"], rank=0, size=2))
    p1 = solving(get_problem(SMALL["logreg"], rank=1, size=2))
    p0.reference(FakeComm(0))
    p1.reference(FakeComm(1))
    assert events == ["solve0", "barrier0", "barrier1", "solve1"]
    assert p1.f_star == p0.f_star


@pytest.mark.parametrize("key", sorted(SMALL))
def test_shards_are_deterministic_and_differ_across_ranks(key):
    a = get_problem(SMALL[key], rank=1, size=3, seed=5)
    b = get_problem(SMALL[key], rank=1, size=3, seed=5)
    c = get_problem(SMALL[key], rank=2, size=3, seed=5)
    x = _point(a)
    assert a.loss_local(x) == b.loss_local(x)
    np.testing.assert_array_equal(a.grad_local(x), b.grad_local(x))
    np.testing.assert_array_equal(a.init_point(), c.init_point())
    assert a.loss_local(x) != c.loss_local(x)
    other_seed = get_problem(SMALL[key], rank=1, size=3, seed=6)
    if a.params.get("shard") != "contiguous":  # file rows in file order ignore the seed
        assert a.loss_local(x) != other_seed.loss_local(x)


@pytest.mark.parametrize(
    "spec", ["lstsq:d=30,n=700,nnz=5", "logreg:d=30,n=700,nnz=30", "mlp:n=700"]
)
def test_union_does_not_depend_on_size_without_heterogeneity(spec):
    one = get_problem(spec, rank=0, size=1).union[0]
    three = get_problem(spec, rank=0, size=3).union[0]
    np.testing.assert_array_equal(one.y, three.y)
    np.testing.assert_array_equal(_dense(one.a), _dense(three.a))
    skewed = get_problem(spec + ",hetero=0.5", rank=0, size=3).union[0]
    assert not np.array_equal(one.y, skewed.y)


def test_hetero_skews_labels_and_features_of_linear_models():
    def spread(h):
        shards = [
            get_problem(f"logreg:d=200,n=4000,hetero={h}", rank=r, size=4).shard for r in range(4)
        ]
        positives = [np.mean(s.y > 0) for s in shards]
        latent = [s.a.coef.mean(axis=0) for s in shards]
        return np.ptp(positives), np.ptp(latent, axis=0).max()

    labels0, latent0 = spread(0.0)
    labels1, latent1 = spread(1.0)
    assert labels0 < 0.1 and labels1 > 0.5
    assert latent1 > 10 * latent0


def test_hetero_skews_class_distribution_of_mlp():
    for h, low, high in ((0.0, 0.2, 0.3), (1.0, 0.99, 1.0)):
        p = get_problem(f"mlp:classes=4,n=4000,hetero={h}", rank=2, size=4)
        frac = np.mean(p.shard.y == 2)
        assert low <= frac <= high
        np.testing.assert_allclose(p.label_probs(2).sum(), 1.0)


def test_mlp_gradient_descent_decreases_loss_and_learns():
    p = get_problem("mlp:d=8,hidden=16,classes=3,n=600", rank=0, size=2)
    assert p.f_star is None and p.x_star is None and p.L is None
    x = p.init_point()
    before, acc_before = p.full_loss(x), p.accuracy(x)
    for _ in range(150):
        x = x - p.default_lr() * p.full_grad(x)
    assert p.full_loss(x) < 0.6 * before
    assert p.accuracy(x) > max(0.6, acc_before + 0.2)


def test_features_products_match_dense():
    p = get_problem("logreg:d=40,n=100,nnz=7,lowrank=3,hetero=1", rank=0, size=1)
    a = p.shard.a
    dense = a.todense()
    rng = np.random.default_rng(0)
    x, r = rng.standard_normal(40), rng.standard_normal(100)
    np.testing.assert_allclose(a @ x, dense @ x)
    np.testing.assert_allclose(r @ a, r @ dense)
    np.testing.assert_allclose(a[np.array([3, 1])].todense(), dense[[3, 1]])


def test_sample_batch_is_reproducible_and_local():
    p = get_problem(SMALL["logreg"], rank=2, size=3)
    b1 = p.sample_batch(np.random.default_rng(9), 50)
    b2 = p.sample_batch(np.random.default_rng(9), 50)
    np.testing.assert_array_equal(b1, b2)
    assert b1.min() >= 0 and b1.max() < p.n_local


def test_spec_parsing():
    p = get_problem("logreg:d=1000, hetero=0.25", rank=0, size=2)
    assert p.dim == 1000 and p.hetero == 0.25 and p.spec.startswith("logreg:d=1000,")
    assert set(available()) >= {"lstsq", "logreg", "mlp"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown problem 'nope'"),
        ("logreg:depth=3", "unknown option 'depth'"),
        ("logreg:d", "is not key=value"),
        ("logreg:d=1,d=2", "given twice"),
        ("logreg:d=1.5", "is not an integer"),
        ("logreg:d=1e3", "is not an integer"),
        ("logreg:lam=abc", "is not a number"),
        ("logreg:lam=nan", "is not a finite number"),
        ("logreg:lam=0", "lam must be > 0"),
        ("logreg:hetero=2", "not in [0, 1]"),
        ("logreg:n=3", "cannot fill 4 shards"),
        ("mlp:act=gelu", "is not one of"),
        ("lstsq:nnz=0", "need d, nnz >= 1"),
    ],
)
def test_spec_errors_are_one_line_usage_errors(spec, message):
    with pytest.raises(UsageError) as info:
        get_problem(spec, rank=0, size=4)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_negative_seed_is_a_usage_error():
    with pytest.raises(UsageError, match="seed=-1"):
        get_problem("mlp", rank=0, size=1, seed=-1)


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HPCOPT_CACHE", str(blocker / "sub"))
    p = get_problem(SMALL["logreg"], rank=0, size=2)
    with pytest.warns(UserWarning, match="cannot cache"):
        assert p.f_star is not None


def test_register_a_custom_problem():
    class Tiny(LeastSquares):
        name = "tiny"

    register("tiny", Tiny)
    p = get_problem("tiny:d=3,n=8", rank=0, size=2)
    assert isinstance(p, Tiny) and p.dim == 3
    with pytest.raises(UsageError):
        register("not a name", Tiny)


def test_mlp_backward_yields_the_gradient_tensor_by_tensor_last_layer_first():
    p = get_problem("mlp:d=4,hidden=5,classes=3,n=100,layers=2,act=relu", rank=0, size=2)
    x = _point(p)
    batch = p.sample_batch(np.random.default_rng(0), 9)
    for b in (None, batch):
        parts = list(p.backward(x, b))
        assert [lo for lo, _, _ in parts] == sorted((lo for lo, _, _ in parts), reverse=True)
        assert parts[0][1] == p.dim and parts[-1][0] == 0
        g = np.empty(p.dim)
        for lo, hi, values in parts:
            assert values.shape == (hi - lo,)
            g[lo:hi] = values
        np.testing.assert_array_equal(g, p.grad_local(x, b))  # the same numbers, bit for bit
    assert p.dim == 5 * 4 + 5 + 5 * 5 + 5 + 3 * 5 + 3 and len(parts) == 6


def test_one_hidden_layer_is_the_default_and_keeps_the_spec():
    one = get_problem("mlp:n=64", rank=0, size=1)
    assert "layers" not in one.spec and one.dim == 32 * 17 + 4 * 33
    assert get_problem("mlp:n=64,layers=1", rank=0, size=1).spec == one.spec

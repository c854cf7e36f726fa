"""Linear models, least squares and logistic regression, on synthetic sparse-plus-low-rank
features or on the rows of a data file (``data=FILE``, see :mod:`hpcopt.problems.datafile`)."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from hpcopt.errors import UsageError
from hpcopt.problems import cache
from hpcopt.problems.base import BLOCK, Problem, Reference, Shard, Vector, stream
from hpcopt.problems.datafile import DataFile, concat_rows, read_data
from hpcopt.problems.features import Features
from hpcopt.problems.solve import Operator, newton, top_eigenvalue

__all__ = ["LeastSquares", "LinearModel", "LogisticRegression"]

DATA, TEACHER, SHIFT, BASIS, PERMUTE = 1, 2, 3, 4, 8
TARGET_SHIFT = 2.0  # target offset of the outermost shards at hetero=1
SYNTHETIC = ("d", "n", "nnz", "lowrank", "noise", "hetero")  # options of generated data only
SHARDINGS = ("contiguous", "shuffle")  # rows of a file: in file order, or a seeded permutation


class LinearModel(Problem):
    """Loss φ(a_j·x, y_j) averaged per shard, plus (lam/2)·‖x‖²."""

    curvature = 1.0  # an upper bound on φ''

    # Keyword options and their defaults; subclasses change some of the defaults.
    defaults: ClassVar[dict[str, Any]] = dict(
        d=100, n=1024, nnz=32, lowrank=4, lam=1e-4, noise=0.1, hetero=0.0, data="",
        shard="contiguous",
    )  # fmt: skip

    def __init__(self, *, rank: int, size: int, seed: int = 0, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {', '.join(unknown)}")
        o = {**self.defaults, **options}
        self._local_L: float | None = None
        self.file: DataFile | None = None
        if o["data"]:
            self._init_file(rank, size, seed, o, sorted(set(options) & set(SYNTHETIC)))
            return
        if "shard" in options:
            raise UsageError(f"{self.name}: shard= applies to rows read from a file (data=)")
        d, nnz, lowrank, lam, noise = o["d"], o["nnz"], o["lowrank"], o["lam"], o["noise"]
        if d < 1 or nnz < 1 or lowrank < 0 or lam < 0 or noise < 0:
            raise UsageError(f"{self.name}: need d, nnz >= 1 and lowrank, lam, noise >= 0")
        self.nnz, self.lowrank = min(nnz, d), min(lowrank, d)
        self.lam, self.noise = lam, noise
        params = {k: v for k, v in o.items() if k not in ("data", "shard")}
        params.update(nnz=self.nnz, lowrank=self.lowrank)
        super().__init__(
            rank=rank, size=size, seed=seed, n=o["n"], hetero=o["hetero"], dim=d, params=params
        )

    def data_bytes(self, rows: int) -> int:
        """Sparse columns and values, low-rank coefficients, targets, and the shared basis."""
        return rows * (12 * self.nnz + 8 * self.lowrank + 8) + 8 * self.lowrank * self.dim

    def _init_file(
        self, rank: int, size: int, seed: int, o: dict[str, Any], synthetic: list[str]
    ) -> None:
        """Rows and targets from the file ``o["data"]``, sharded as ``o["shard"]`` says."""
        if synthetic:
            raise UsageError(f"{self.name}: data= reads the rows from a file; "
                             f"{', '.join(synthetic)} do not apply")  # fmt: skip
        if o["shard"] not in SHARDINGS:
            raise UsageError(f"{self.name}: shard={o['shard']!r} is not one of "
                             f"{', '.join(SHARDINGS)}")  # fmt: skip
        if o["lam"] < 0:
            raise UsageError(f"{self.name}: lam must be >= 0")
        self.file = read_data(o["data"])
        self.targets = self.file_targets(self.file.y, o["data"])
        self.lam, self.noise, self.nnz, self.lowrank = o["lam"], 0.0, 0, 0
        params = {"data": o["data"], "lam": o["lam"], "shard": o["shard"]}
        n = len(self.targets)
        super().__init__(
            rank=rank, size=size, seed=seed, n=n, hetero=0.0, dim=self.file.dim, params=params
        )
        order = np.arange(n)
        self.order = stream(seed, PERMUTE).permutation(n) if o["shard"] == "shuffle" else order

    @classmethod
    def file_targets(cls, y: Vector, path: str) -> Vector:
        """The targets of a data file as this model uses them."""
        return y

    @property
    def cache_spec(self) -> str:
        """The spec that keys the reference cache (with the file's digest for file data)."""
        return self.spec if self.file is None else f"{self.spec}#{self.file.digest}"

    @cached_property
    def basis(self) -> NDArray[np.float64]:
        """U (r×d): the shared low-rank feature directions, rows of norm ≈ 1."""
        rng = stream(self.seed, BASIS)
        return rng.standard_normal((self.lowrank, self.dim)) / np.sqrt(self.dim)

    @cached_property
    def teacher(self) -> Vector:
        """The model that generates targets."""
        return stream(self.seed, TEACHER).standard_normal(self.dim)

    def _block(self, b: int) -> tuple[NDArray[np.int32] | None, Vector, Vector, Vector]:
        rng = stream(self.seed, DATA, b)
        dense = self.nnz == self.dim
        cols = None if dense else rng.integers(0, self.dim, (BLOCK, self.nnz), dtype=np.int32)
        vals = rng.standard_normal((BLOCK, self.nnz))
        coef = rng.standard_normal((BLOCK, self.lowrank))
        return cols, vals, coef, rng.standard_normal(BLOCK)

    def make_shard(self, i: int) -> Shard:
        """Rows from blocks (seed, b), then shard i's shifts scaled by hetero; or shard i's
        rows of the data file."""
        if self.file is not None:
            lo, hi = self.shard_range(i)
            picked = self.order[lo:hi]
            return Shard(self.file.a[picked], self.targets[picked])
        span, rows = self.shard_blocks(i)
        blocks = [self._block(b) for b in span]
        cols = None if blocks[0][0] is None else np.concatenate([b[0] for b in blocks])[rows]
        vals, coef, eps = (np.concatenate([b[k] for b in blocks])[rows] for k in (1, 2, 3))
        rng = stream(self.seed, SHIFT, i)
        feature_shift = rng.standard_normal(self.dim)
        latent_shift = rng.standard_normal(self.lowrank)
        h = self.hetero
        # each row has E‖a‖² ≈ 1 (1 + h² with shifts): half sparse, half low-rank when r > 0
        sparse_share = 0.5 if self.lowrank else 1.0
        shift = feature_shift if cols is None else feature_shift[cols]
        vals = (vals + h * shift) * np.sqrt(sparse_share / self.nnz)
        coef = (coef + h * latent_shift) * np.sqrt((1 - sparse_share) / max(self.lowrank, 1))
        a = Features(cols, vals, coef, self.basis)
        offset = 2.0 * i / (self.size - 1) - 1.0 if self.size > 1 else 0.0
        t = a @ self.teacher + self.noise * eps
        return Shard(a, self.link(t + h * TARGET_SHIFT * offset))

    @staticmethod
    def concat(shards: list[Shard]) -> Shard:
        """Stack shards row-wise."""
        parts = [s.a for s in shards]
        rows = Features.concat(parts) if isinstance(parts[0], Features) else concat_rows(parts)
        return Shard(rows, np.concatenate([s.y for s in shards]))

    @staticmethod
    @abstractmethod
    def link(t: Vector) -> Vector:
        """Targets from noisy teacher scores."""

    @staticmethod
    @abstractmethod
    def phi(z: Vector, y: Vector) -> tuple[Vector, Vector, Vector]:
        """Per-sample loss φ(z, y) and its first and second derivatives in z."""

    def objective(
        self, data: Shard, x: Vector, weights: float | Vector, grad: bool
    ) -> tuple[float, Vector | None]:
        """Σ_j w_j·φ(a_j·x, y_j) + (lam/2)·‖x‖² and its gradient."""
        loss, d1, _ = self.phi(data.a @ x, data.y)
        value = float(np.sum(weights * loss)) + 0.5 * self.lam * float(x @ x)
        if not grad:
            return value, None
        return value, (weights * d1) @ data.a + self.lam * x

    def hessian(self, data: Shard, x: Vector, weights: float | Vector) -> Operator:
        """v ↦ ∇²(Σ_j w_j·φ_j + reg)(x)·v."""
        d2 = weights * self.phi(data.a @ x, data.y)[2]
        return lambda v: (d2 * (data.a @ v)) @ data.a + self.lam * v

    def init_point(self) -> Vector:
        """x = 0."""
        return np.zeros(self.dim)

    def _smoothness(self) -> float:
        data, _ = self.union
        bound = 0.0
        for i in range(self.size):
            lo, hi = self.shard_range(i)
            a = data.a[slice(lo, hi)]
            hv = lambda v, a=a, n=hi - lo: ((a @ v) @ a) / n  # noqa: E731
            bound = max(bound, top_eigenvalue(hv, self.dim, self.seed + i))
        return self.curvature * bound + self.lam

    def local_smoothness(self) -> float:
        """curvature·λmax(A_iᵀA_i/n_i) + lam on this rank's shard (power iteration, cached)."""
        if self._local_L is None:
            a, n = self.shard.a, self.n_local
            hv = lambda v: ((a @ v) @ a) / n  # noqa: E731
            top = top_eigenvalue(hv, self.dim, self.seed + self.rank)
            self._local_L = self.curvature * top + self.lam
        return self._local_L

    def compute_reference(self) -> Reference:
        """x*, f*, L from the cache, else by Newton-CG on the union and power iteration."""
        path = cache.cache_path(self.cache_spec, self.size, self.seed)
        hit = cache.load(path)
        if hit is None:
            data, w = self.union
            x_star = newton(
                lambda x: self.value_grad(data, x, w),
                lambda x: self.hessian(data, x, w),
                self.init_point(),
            )
            hit = dict(
                x_star=x_star,
                f_star=self.value(data, x_star, w),
                L=self._smoothness(),
            )
            try:
                cache.store(path, **hit)
            except OSError as exc:  # a read-only cache costs time, not correctness
                warnings.warn(f"{self.name}: cannot cache the reference: {exc}", stacklevel=2)
        return Reference(float(hit["f_star"]), hit["x_star"], float(hit["L"]), self.lam)


class LeastSquares(LinearModel):
    """φ = ½(a·x − y)²; y = teacher score + noise (+ shard offset)."""

    name = "lstsq"

    @staticmethod
    def link(t: Vector) -> Vector:
        """Targets are the scores."""
        return t

    @staticmethod
    def phi(z: Vector, y: Vector) -> tuple[Vector, Vector, Vector]:
        """½r², r, 1."""
        r = z - y
        return 0.5 * r * r, r, np.ones_like(r)


class LogisticRegression(LinearModel):
    """φ = log(1 + exp(−y·a·x)), y ∈ {−1, +1} = sign of the noisy score (+ shard offset)."""

    name = "logreg"
    curvature = 0.25
    defaults: ClassVar[dict[str, Any]] = dict(
        LinearModel.defaults, d=1000, n=4096, lowrank=8, noise=0.5
    )

    def __init__(self, *, rank: int, size: int, seed: int = 0, **options: Any) -> None:
        if options.get("lam", self.defaults["lam"]) <= 0:
            raise UsageError("logreg: lam must be > 0 (the optimum may not exist otherwise)")
        super().__init__(rank=rank, size=size, seed=seed, **options)

    @staticmethod
    def link(t: Vector) -> Vector:
        """±1 labels."""
        return np.where(t >= 0, 1.0, -1.0)

    @classmethod
    def file_targets(cls, y: Vector, path: str) -> Vector:
        """Two classes as −1 (the smaller label) and +1."""
        labels = np.unique(y)
        if len(labels) > 2:
            raise UsageError(f"logreg: {path} has {len(labels)} distinct labels; logistic "
                             "regression needs 2")  # fmt: skip
        return np.where(y == labels[-1], 1.0, -1.0) if len(labels) == 2 else np.ones_like(y)

    @staticmethod
    def phi(z: Vector, y: Vector) -> tuple[Vector, Vector, Vector]:
        """log(1+e^−m), −y·σ(−m), σ(m)·σ(−m) with m = y·z."""
        m = y * z
        s = np.exp(-np.logaddexp(0.0, m))  # σ(−m), stable for large |m|
        return np.logaddexp(0.0, -m), -y * s, s * (1.0 - s)

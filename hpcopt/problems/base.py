"""The Problem base class: sharded data, local and global objectives, reference quantities."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hpcopt.errors import UsageError

__all__ = ["BLOCK", "Comm", "Problem", "Reference", "Shard", "Vector", "stream"]

Vector = NDArray[np.float64]
BLOCK = 256  # samples per generation block: sample j comes from block j // BLOCK


def stream(seed: int, *key: int) -> np.random.Generator:
    """A generator for one named stream of one seed: no global state."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


class Comm(Protocol):
    """The part of an MPI communicator that :meth:`Problem.reference` uses."""

    def Get_rank(self) -> int: ...

    def Barrier(self) -> None: ...


@dataclass(frozen=True)
class Reference:
    """Global quantities: optimum, optimal value, smoothness and strong convexity bounds."""

    f_star: float | None = None
    x_star: Vector | None = None
    L: float | None = None
    mu: float | None = None


@dataclass(frozen=True)
class Shard:
    """Samples of one shard: features (rows) and targets."""

    a: Any
    y: NDArray[Any]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, rows: NDArray[np.intp] | slice) -> Shard:
        return Shard(self.a[rows], self.y[rows])


class Problem(ABC):
    """f(x) = (1/p)·Σ_i f_i(x), f_i = mean loss over shard i + regularizer; p = size."""

    name = ""

    def __init__(
        self,
        *,
        rank: int,
        size: int,
        seed: int,
        n: int,
        hetero: float,
        dim: int,
        params: dict[str, Any],
    ) -> None:
        if size < 1 or not 0 <= rank < size:
            raise UsageError(f"problem: rank {rank} is not in [0, size={size})")
        if seed < 0:
            raise UsageError(f"{self.name}: seed={seed} must be >= 0")
        if n < size:
            raise UsageError(f"{self.name}: n={n} samples cannot fill {size} shards")
        if not 0.0 <= hetero <= 1.0:
            raise UsageError(f"{self.name}: hetero={hetero} is not in [0, 1]")
        self.rank, self.size, self.seed, self.hetero = rank, size, seed, hetero
        self.dim = dim
        self.n_global = n
        lo, hi = self.shard_range(rank)
        self.n_local = hi - lo
        self.params = dict(sorted(params.items()))
        self.spec = self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())
        self._reference: Reference | None = None

    def shard_range(self, i: int) -> tuple[int, int]:
        """Global sample indices [lo, hi) of shard i: the first n % p shards get one more."""
        q, r = divmod(self.n_global, self.size)
        lo = i * q + min(i, r)
        return lo, lo + q + (i < r)

    def shard_blocks(self, i: int) -> tuple[range, slice]:
        """The generation blocks that cover shard i, and its rows in their concatenation."""
        lo, hi = self.shard_range(i)
        b0 = lo // BLOCK
        return range(b0, (hi - 1) // BLOCK + 1), slice(lo - b0 * BLOCK, hi - b0 * BLOCK)

    @abstractmethod
    def make_shard(self, i: int) -> Shard:
        """Generate shard i from (seed, i); the same on every rank."""

    @abstractmethod
    def objective(
        self, data: Shard, x: Vector, weights: float | Vector, grad: bool
    ) -> tuple[float, Vector | None]:
        """Σ_j w_j·loss_j(x) + regularizer, and its gradient when grad; Σ_j w_j = 1."""

    def value(self, data: Shard, x: Vector, weights: float | Vector) -> float:
        """Σ_j w_j·loss_j(x) + regularizer."""
        return self.objective(data, x, weights, grad=False)[0]

    def value_grad(self, data: Shard, x: Vector, weights: float | Vector) -> tuple[float, Vector]:
        """The weighted objective and its gradient."""
        value, grad = self.objective(data, x, weights, grad=True)
        assert grad is not None
        return value, grad

    @abstractmethod
    def init_point(self) -> Vector:
        """The starting point, identical on all ranks."""

    @cached_property
    def shard(self) -> Shard:
        """This rank's shard."""
        return self.make_shard(self.rank)

    @cached_property
    def union(self) -> tuple[Shard, Vector]:
        """All shards stacked, with weights 1/(p·n_i) so that the weighted sum is f."""
        shards = [self.make_shard(i) for i in range(self.size)]
        weights = np.concatenate([np.full(len(s), 1.0 / (self.size * len(s))) for s in shards])
        return self.concat(shards), weights

    @staticmethod
    @abstractmethod
    def concat(shards: list[Shard]) -> Shard:
        """Stack shards row-wise."""

    def sample_batch(self, rng: np.random.Generator, size: int) -> NDArray[np.intp]:
        """Local sample indices for a minibatch, drawn uniformly with replacement."""
        return rng.integers(0, self.n_local, size=size, dtype=np.intp)

    def _data(self, batch: ArrayLike | None) -> Shard:
        return self.shard if batch is None else self.shard[np.asarray(batch, dtype=np.intp)]

    def loss_local(self, x: ArrayLike, batch: ArrayLike | None = None) -> float:
        """f_i(x) on this rank's shard, or the mean loss over a batch of its indices."""
        data = self._data(batch)
        return self.value(data, np.asarray(x, dtype=np.float64), 1.0 / len(data))

    def grad_local(self, x: ArrayLike, batch: ArrayLike | None = None) -> Vector:
        """∇f_i(x) on this rank's shard, or a minibatch gradient over local indices."""
        return self.loss_grad_local(x, batch)[1]

    def loss_grad_local(self, x: ArrayLike, batch: ArrayLike | None = None) -> tuple[float, Vector]:
        """loss_local and grad_local in one pass."""
        data = self._data(batch)
        return self.value_grad(data, np.asarray(x, dtype=np.float64), 1.0 / len(data))

    def full_loss(self, x: ArrayLike) -> float:
        """f(x) from all shards regenerated here; for tests and small problems."""
        data, weights = self.union
        return self.value(data, np.asarray(x, dtype=np.float64), weights)

    def full_grad(self, x: ArrayLike) -> Vector:
        """∇f(x) from all shards regenerated here."""
        data, weights = self.union
        return self.value_grad(data, np.asarray(x, dtype=np.float64), weights)[1]

    def reference(self, comm: Comm | None = None) -> Reference:
        """Global reference quantities; with comm, rank 0 computes them first (shared cache)."""
        if self._reference is None:
            if comm is not None and comm.Get_rank() != 0:
                comm.Barrier()
            self._reference = self.compute_reference()
            if comm is not None and comm.Get_rank() == 0:
                comm.Barrier()
        return self._reference

    def compute_reference(self) -> Reference:
        """What :meth:`reference` returns: nothing known by default."""
        return Reference()

    @property
    def f_star(self) -> float | None:
        """min f, or None where unknown (non-convex problems)."""
        return self.reference().f_star

    @property
    def x_star(self) -> Vector | None:
        """argmin f, or None where unknown."""
        return self.reference().x_star

    @property
    def L(self) -> float | None:
        """Smoothness constant valid for f and every f_i, or None."""
        return self.reference().L

    @property
    def mu(self) -> float | None:
        """Strong convexity lower bound of f, or None."""
        return self.reference().mu

    def footprint(self, *, reference: bool = False) -> int:
        """Bytes this rank needs: its shard, a few model-sized vectors, and with
        ``reference`` (rank 0) every shard, for the global optimum."""
        shard = self.data_bytes(self.n_local)
        return 16 * 8 * self.dim + shard + (self.data_bytes(self.n_global) if reference else 0)

    def data_bytes(self, rows: int) -> int:
        """Bytes of ``rows`` samples (dense float64 features by default)."""
        return 8 * rows * (self.dim + 1)

    def local_smoothness(self) -> float | None:
        """A smoothness constant of this rank's f_i alone, or None where unknown."""
        return None

    def default_lr(self) -> float:
        """A safe step size for full-gradient steps: 1/L."""
        L = self.L
        assert L is not None, "problems without L override default_lr"
        return 1.0 / L

    def __repr__(self) -> str:
        return f"<{self.spec} rank={self.rank}/{self.size} seed={self.seed}>"

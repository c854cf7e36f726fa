"""A one-hidden-layer softmax classifier on a synthetic Gaussian mixture: non-convex."""

from __future__ import annotations

from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from hpcopt.errors import UsageError
from hpcopt.problems.base import BLOCK, Problem, Shard, Vector, stream

__all__ = ["MLP"]

DATA, CENTERS, INIT, TEST = 1, 5, 6, 7
ACTIVATIONS = ("tanh", "relu")


class MLP(Problem):
    """Cross-entropy of softmax(W2·act(W1·a + b1) + b2) per shard, plus (lam/2)·‖x‖²."""

    name = "mlp"

    def __init__(
        self,
        *,
        rank: int,
        size: int,
        seed: int = 0,
        d: int = 16,
        hidden: int = 32,
        classes: int = 4,
        clusters: int = 2,
        n: int = 4096,
        sep: float = 1.0,
        lam: float = 1e-4,
        act: str = "tanh",
        hetero: float = 0.0,
        n_test: int = 1024,
    ) -> None:
        if min(d, hidden, clusters, n_test) < 1 or classes < 2 or lam < 0 or sep < 0:
            raise UsageError(
                "mlp: need d, hidden, clusters, n_test >= 1, classes >= 2, lam, sep >= 0"
            )
        if act not in ACTIVATIONS:
            raise UsageError(f"mlp: act={act!r} is not one of {', '.join(ACTIVATIONS)}")
        self.d_in, self.hidden, self.classes, self.clusters = d, hidden, classes, clusters
        self.sep, self.lam, self.act, self.n_test = sep, lam, act, n_test
        params = dict(
            d=d,
            hidden=hidden,
            classes=classes,
            clusters=clusters,
            n=n,
            sep=sep,
            lam=lam,
            act=act,
            hetero=hetero,
            n_test=n_test,
        )
        super().__init__(
            rank=rank,
            size=size,
            seed=seed,
            n=n,
            hetero=hetero,
            dim=hidden * (d + 1) + classes * (hidden + 1),
            params=params,
        )

    @cached_property
    def centers(self) -> NDArray[np.float64]:
        """Cluster means, (classes, clusters, d)."""
        shape = (self.classes, self.clusters, self.d_in)
        return self.sep * stream(self.seed, CENTERS).standard_normal(shape)

    def label_probs(self, i: int) -> Vector:
        """Class distribution of shard i: (1 − h)·uniform + h·one-hot(i mod classes)."""
        probs = np.full(self.classes, (1.0 - self.hetero) / self.classes)
        probs[i % self.classes] += self.hetero
        return probs

    def _samples(self, rng: np.random.Generator, count: int, probs: Vector) -> Shard:
        u = rng.random(count)
        cluster = rng.integers(0, self.clusters, count)
        noise = rng.standard_normal((count, self.d_in))
        y = np.minimum(np.searchsorted(np.cumsum(probs), u, side="right"), self.classes - 1)
        return Shard(self.centers[y, cluster] + noise, y)

    def make_shard(self, i: int) -> Shard:
        """Samples from blocks (seed, b) with shard i's label distribution."""
        span, rows = self.shard_blocks(i)
        probs = self.label_probs(i)
        blocks = [self._samples(stream(self.seed, DATA, b), BLOCK, probs) for b in span]
        return self.concat(blocks)[rows]

    @cached_property
    def test_set(self) -> Shard:
        """Held-out samples with balanced classes, the same on every rank."""
        return self._samples(
            stream(self.seed, TEST), self.n_test, np.full(self.classes, 1 / self.classes)
        )

    @staticmethod
    def concat(shards: list[Shard]) -> Shard:
        """Stack shards row-wise."""
        return Shard(np.concatenate([s.a for s in shards]), np.concatenate([s.y for s in shards]))

    def unpack(self, x: Vector) -> tuple[Vector, Vector, Vector, Vector]:
        """Views W1 (hidden×d), b1, W2 (classes×hidden), b2 of a parameter vector."""
        h, d, c = self.hidden, self.d_in, self.classes
        sizes = np.cumsum([h * d, h, c * h])
        w1, b1, w2, b2 = np.split(x, sizes)
        return w1.reshape(h, d), b1, w2.reshape(c, h), b2

    def init_point(self) -> Vector:
        """Weights ~ N(0, 1/fan_in), biases 0, from the seed."""
        rng = stream(self.seed, INIT)
        w1 = rng.standard_normal(self.hidden * self.d_in) / np.sqrt(self.d_in)
        w2 = rng.standard_normal(self.classes * self.hidden) / np.sqrt(self.hidden)
        return np.concatenate([w1, np.zeros(self.hidden), w2, np.zeros(self.classes)])

    def _forward(self, a: Vector, x: Vector) -> tuple[Vector, Vector, Vector]:
        w1, b1, w2, b2 = self.unpack(x)
        pre = a @ w1.T + b1
        hid = np.tanh(pre) if self.act == "tanh" else np.maximum(pre, 0.0)
        return pre, hid, hid @ w2.T + b2

    def objective(
        self, data: Shard, x: Vector, weights: float | Vector, grad: bool
    ) -> tuple[float, Vector | None]:
        """Weighted cross-entropy + (lam/2)·‖x‖² and its gradient by backpropagation."""
        pre, hid, z = self._forward(data.a, x)
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        rows = np.arange(len(data))
        w = np.broadcast_to(weights, (len(data),))
        value = float(w @ (lse - z[rows, data.y])) + 0.5 * self.lam * float(x @ x)
        if not grad:
            return value, None
        dz = np.exp(z - lse[:, None])
        dz[rows, data.y] -= 1.0
        dz *= w[:, None]
        _, _, w2, _ = self.unpack(x)
        dh = dz @ w2
        dpre = dh * (1.0 - hid * hid) if self.act == "tanh" else dh * (pre > 0.0)
        g = np.concatenate(
            [(dpre.T @ data.a).ravel(), dpre.sum(0), (dz.T @ hid).ravel(), dz.sum(0)]
        )
        return value, g + self.lam * x

    def accuracy(self, x: Vector) -> float:
        """Fraction of the held-out test set classified correctly."""
        z = self._forward(self.test_set.a, np.asarray(x, dtype=np.float64))[2]
        return float(np.mean(z.argmax(axis=1) == self.test_set.y))

    def default_lr(self) -> float:
        """A step size that makes full-batch gradient descent decrease the loss steadily."""
        return 0.5

"""A softmax classifier with hidden layers on a synthetic Gaussian mixture: non-convex.

The parameter vector holds W_0, b_0, W_1, b_1, ..., W_L, b_L (layer l maps width n_l to
n_{l+1}; widths d, hidden, ..., hidden, classes). :meth:`MLP.backward` yields each tensor's
gradient as backpropagation produces it, last layer first, so that an optimizer can start
communicating the first gradients while the rest are computed (as PyTorch DDP does).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from hpcopt.errors import UsageError
from hpcopt.problems.base import BLOCK, Problem, Shard, Vector, stream

__all__ = ["MLP"]

DATA, CENTERS, INIT, TEST = 1, 5, 6, 7
ACTIVATIONS = ("tanh", "relu")


class MLP(Problem):
    """Cross-entropy of softmax(W_L·act(...act(W_0·a + b_0)...) + b_L) per shard, plus
    (lam/2)·‖x‖²."""

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
        layers: int = 1,
    ) -> None:
        if min(d, hidden, clusters, n_test, layers) < 1 or classes < 2 or lam < 0 or sep < 0:
            raise UsageError(
                "mlp: need d, hidden, clusters, n_test, layers >= 1, classes >= 2, lam, sep >= 0"
            )
        if act not in ACTIVATIONS:
            raise UsageError(f"mlp: act={act!r} is not one of {', '.join(ACTIVATIONS)}")
        self.d_in, self.hidden, self.classes, self.clusters = d, hidden, classes, clusters
        self.sep, self.lam, self.act, self.n_test = sep, lam, act, n_test
        self.widths = [d] + [hidden] * layers + [classes]
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
        if layers != 1:
            params["layers"] = layers
        super().__init__(
            rank=rank,
            size=size,
            seed=seed,
            n=n,
            hetero=hetero,
            dim=sum(o * (i + 1) for i, o in zip(self.widths, self.widths[1:], strict=False)),
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

    @cached_property
    def tensors(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """(start, stop, shape) of W_0, b_0, ..., W_L, b_L in the parameter vector."""
        spans: list[tuple[int, int, tuple[int, ...]]] = []
        at = 0
        for fan_in, fan_out in zip(self.widths, self.widths[1:], strict=False):
            for shape in ((fan_out, fan_in), (fan_out,)):
                size = int(np.prod(shape))
                spans.append((at, at + size, shape))
                at += size
        return spans

    def unpack(self, x: Vector) -> list[tuple[Vector, Vector]]:
        """Views (W_l, b_l) of a parameter vector, input layer first."""
        views = [x[lo:hi].reshape(shape) for lo, hi, shape in self.tensors]
        return list(zip(views[::2], views[1::2], strict=True))

    def data_bytes(self, rows: int) -> int:
        """Features (d per sample, float64) and labels of ``rows`` samples."""
        return 8 * rows * (self.d_in + 1)

    def init_point(self) -> Vector:
        """Weights ~ N(0, 1/fan_in), biases 0, from the seed."""
        rng = stream(self.seed, INIT)
        x = np.zeros(self.dim)
        for lo, hi, shape in self.tensors[::2]:
            x[lo:hi] = rng.standard_normal(hi - lo) / np.sqrt(shape[1])
        return x

    def _activate(self, pre: Vector) -> Vector:
        return np.tanh(pre) if self.act == "tanh" else np.maximum(pre, 0.0)

    def _forward(self, a: Vector, x: Vector) -> tuple[list[Vector], list[Vector], Vector]:
        """Pre-activations and activations of the hidden layers, and the output scores."""
        pres, outs, h = [], [a], a
        *hidden, (w_out, b_out) = self.unpack(x)
        for w, b in hidden:
            pre = h @ w.T + b
            h = self._activate(pre)
            pres.append(pre)
            outs.append(h)
        return pres, outs, h @ w_out.T + b_out

    def _loss(self, data: Shard, x: Vector, weights: float | Vector) -> tuple[float, Vector, list]:
        """Weighted cross-entropy + (lam/2)·‖x‖², dL/dscores, and the forward state."""
        pres, outs, z = self._forward(data.a, x)
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        rows = np.arange(len(data))
        w = np.broadcast_to(weights, (len(data),))
        value = float(w @ (lse - z[rows, data.y])) + 0.5 * self.lam * float(x @ x)
        dz = np.exp(z - lse[:, None])
        dz[rows, data.y] -= 1.0
        dz *= w[:, None]
        return value, dz, [pres, outs]

    def _backward(self, x: Vector, dz: Vector, state: list) -> Iterator[tuple[int, int, Vector]]:
        """(start, stop, gradient) of each tensor, b_L and W_L first, down to W_0."""
        pres, outs = state
        layers = self.unpack(x)
        spans = self.tensors
        delta = dz
        for k in range(len(layers) - 1, -1, -1):
            (w_lo, w_hi, _), (b_lo, b_hi, _) = spans[2 * k], spans[2 * k + 1]
            yield b_lo, b_hi, delta.sum(0) + self.lam * x[b_lo:b_hi]
            yield w_lo, w_hi, (delta.T @ outs[k]).ravel() + self.lam * x[w_lo:w_hi]
            if k:
                dh = delta @ layers[k][0]
                h = outs[k]
                delta = dh * (1.0 - h * h) if self.act == "tanh" else dh * (pres[k - 1] > 0.0)

    def objective(
        self, data: Shard, x: Vector, weights: float | Vector, grad: bool
    ) -> tuple[float, Vector | None]:
        """Weighted cross-entropy + (lam/2)·‖x‖² and its gradient by backpropagation."""
        if not grad:
            _, _, z = self._forward(data.a, x)
            z -= z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1))
            w = np.broadcast_to(weights, (len(data),))
            value = float(w @ (lse - z[np.arange(len(data)), data.y]))
            return value + 0.5 * self.lam * float(x @ x), None
        value, dz, state = self._loss(data, x, weights)
        g = np.empty_like(x)
        for lo, hi, part in self._backward(x, dz, state):
            g[lo:hi] = part
        return value, g

    def backward(
        self, x: Vector, batch: NDArray[np.intp] | None = None
    ) -> Iterator[tuple[int, int, Vector]]:
        """The local gradient tensor by tensor, as backpropagation produces it (last layer
        first): (start, stop, values) with the same numbers as :meth:`grad_local`."""
        data = self._data(batch)
        x = np.asarray(x, dtype=np.float64)
        _, dz, state = self._loss(data, x, 1.0 / len(data))
        yield from self._backward(x, dz, state)

    def accuracy(self, x: Vector) -> float:
        """Fraction of the held-out test set classified correctly."""
        z = self._forward(self.test_set.a, np.asarray(x, dtype=np.float64))[2]
        return float(np.mean(z.argmax(axis=1) == self.test_set.y))

    def default_lr(self) -> float:
        """A step size that makes full-batch gradient descent decrease the loss steadily."""
        return 0.5

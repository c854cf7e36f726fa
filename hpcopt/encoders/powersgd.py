"""PowerSGD: a rank-r approximation P·Qᵀ found by one warm-started power iteration.

Across ranks it is two dependent sums (of P, then of Q), so it exposes three stages
for :mod:`hpcopt.aggregation.powersgd`: :meth:`PowerSGD.project` (P = MQ), :meth:`reproject`
(orthonormalize the summed P, Q = MᵀP) and :meth:`reconstruct` (x̂ = PQᵀ from the
summed Q). ``encode``/``decode`` run the same stages on one rank.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, flat_f32, sum_squares
from hpcopt.encoders.registry import register
from hpcopt.errors import UsageError

__all__ = ["PowerSGD", "matrix_shape"]


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(m, n) of the matrix view: 2-D inputs as they are, others near-square and padded."""
    if len(shape) == 2:
        return shape[0], shape[1]
    d = math.prod(shape)
    m = max(1, math.isqrt(d - 1) + 1 if d else 1)
    return m, max(1, -(-d // m))


class PowerSGD(Encoder):
    """Rank-``r`` compression; wire bytes 4·r·(m+n). Q is kept between steps (warm start).

    The starting Q comes from a generator seeded by ``seed`` alone, so that every rank
    starts from the same Q; afterwards each rank keeps the summed Q it received.
    """

    name = "powersgd"
    two_stage = True

    def __init__(self, *, r: int = 2, seed: int = 0, rank: int = 0) -> None:
        super().__init__(seed=seed, rank=rank)
        if r < 1:
            raise UsageError(f"powersgd r must be >= 1, got {r}")
        self.r = r
        self._q: dict[tuple[int, int], Any] = {}
        self._shape: tuple[int, ...] = ()
        self._mat: Any = None

    def rank_for(self, m: int, n: int) -> int:
        """The rank actually used for an m×n matrix."""
        return min(self.r, m, n)

    def _matrix(self, x: Any) -> Any:
        flat = flat_f32(x)
        xp = array_module(flat)
        m, n = matrix_shape(tuple(x.shape))
        sum_squares(flat, self.name)
        if flat.size == m * n:
            return flat.reshape(m, n)
        mat = self.work(xp, "m", m * n, np.float32)
        mat[: flat.size] = flat
        mat[flat.size :] = 0
        return mat.reshape(m, n)

    def _warm_q(self, xp: Any, m: int, n: int) -> Any:
        q = self._q.get((m, n))
        if q is None or array_module(q) is not xp:
            gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, m, n])))
            host = gen.standard_normal((n, self.rank_for(m, n))).astype(np.float32)
            q = self._q[(m, n)] = host if xp is np else xp.asarray(host)
        return q

    def _keep_q(self, q: Any, m: int, n: int) -> None:
        """Keep a copy of Q as the next warm start (into the kept array when it fits)."""
        kept = self._q.get((m, n))
        if kept is not None and kept.shape == q.shape and array_module(kept) is array_module(q):
            kept[...] = q
        else:
            self._q[(m, n)] = q.copy()

    def project(self, x: Any, step: int = 0) -> Any:
        """Stage 1: keep M (x as a matrix) and return P = MQ (m×r, to be summed).

        M is a view of ``x`` when no padding is needed: keep x unchanged until reproject.
        """
        self._shape = tuple(x.shape)
        mat = self._mat = self._matrix(x)
        xp = array_module(mat)
        q = self._warm_q(xp, *mat.shape)
        p = self.work(xp, "p", mat.shape[0] * q.shape[1], np.float32).reshape(-1, q.shape[1])
        xp.matmul(mat, q, out=p)
        return p

    def reproject(self, p: Any) -> Any:
        """Stage 2: orthonormalize the summed P in place; return Q = MᵀP (n×r, to be summed)."""
        xp = array_module(p)
        self._orthonormalize(p)
        n = self._mat.shape[1]
        q = self.work(xp, "q", n * p.shape[1], np.float32).reshape(n, p.shape[1])
        xp.matmul(self._mat.T, p, out=q)
        return q

    def _orthonormalize(self, p: Any) -> None:
        """Gram-Schmidt on the columns of ``p`` in place (a zero column stays zero).

        P·Pᵀ, all that the reconstruction uses, does not depend on which orthonormal basis
        of P's columns is taken; this one needs no temporaries the size of P.
        """
        xp = array_module(p)
        col = self.work(xp, "gs", p.shape[0], np.float32)
        for j in range(p.shape[1]):
            pj = p[:, j]
            for i in range(j):
                xp.multiply(p[:, i], xp.dot(p[:, i], pj), out=col)
                xp.subtract(pj, col, out=pj)
            norm = float(xp.sqrt(xp.dot(pj, pj)))
            if norm > 0:
                xp.multiply(pj, np.float32(1.0 / norm), out=pj)

    def reconstruct(self, q: Any, out: Any = None) -> Any:
        """Stage 3: x̂ = PQᵀ from the summed Q (kept as the next warm start)."""
        xp = array_module(q)
        m, n = matrix_shape(self._shape)
        p = self.work(xp, "p", m * q.shape[1], np.float32).reshape(m, -1)
        self._keep_q(q, m, n)
        return self._expand(p, q, out, self._shape)

    def _expand(self, p: Any, q: Any, out: Any, shape: tuple[int, ...]) -> Any:
        xp = array_module(q)
        d, full = math.prod(shape), p.shape[0] * q.shape[0]
        res = xp.empty(d, dtype=np.float32) if out is None else out.reshape(-1)
        if d == full:
            xp.matmul(p, q.T, out=res.reshape(p.shape[0], q.shape[0]))
            return res.reshape(shape)
        tmp = self.work(xp, "full", full, np.float32)
        xp.matmul(p, q.T, out=tmp.reshape(p.shape[0], q.shape[0]))
        res[...] = tmp[:d]
        return res.reshape(shape)

    def encode(self, x: Any, step: int = 0) -> Payload:
        p = self.project(x, step)
        q = self.reproject(p)
        self._keep_q(q, *matrix_shape(self._shape))
        return Payload((p.reshape(-1), q.reshape(-1)), tuple(x.shape), step)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        p, q = payload.buffers
        m, n = matrix_shape(payload.shape)
        r = p.size // m if m else 0
        return self._expand(p.reshape(m, r), q.reshape(n, r), out, payload.shape)

    def wire_bytes(self, d: int) -> int:
        m, n = matrix_shape((d,))
        return 4 * self.rank_for(m, n) * (m + n)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        m, n = matrix_shape((d,))
        r = self.rank_for(m, n)
        return [(np.dtype(np.float32), m * r), (np.dtype(np.float32), n * r)]


register(PowerSGD.name, PowerSGD)

"""High-accuracy solvers for reference optima: conjugate gradient, Newton-CG, power iteration."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hpcopt.problems.base import Vector

__all__ = ["cg", "newton", "top_eigenvalue"]

Operator = Callable[[Vector], Vector]


def cg(hv: Operator, b: Vector, *, rtol: float, maxiter: int) -> Vector:
    """Solve H·s = b for symmetric positive (semi)definite H, starting at 0."""
    s = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = r @ r
    stop = (rtol * np.sqrt(rr)) ** 2
    for _ in range(maxiter):
        if rr <= stop:
            break
        hp = hv(p)
        php = p @ hp
        if php <= 0.0:
            break
        alpha = rr / php
        s += alpha * p
        r -= alpha * hp
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return s


def newton(
    value_grad: Callable[[Vector], tuple[float, Vector]],
    hessian: Callable[[Vector], Operator],
    x0: Vector,
    *,
    gtol: float = 1e-13,
    maxiter: int = 100,
) -> Vector:
    """Minimize a smooth convex function by Newton-CG with backtracking, to ‖∇f‖ ≤ gtol·‖∇f(x0)‖."""
    x = x0.copy()
    f, g = value_grad(x)
    g0 = max(float(np.linalg.norm(g)), np.finfo(float).tiny)
    for _ in range(maxiter):
        gnorm = float(np.linalg.norm(g))
        if gnorm <= gtol * g0:
            break
        step = cg(hessian(x), -g, rtol=min(0.5, np.sqrt(gnorm / g0)), maxiter=10 * x.size)
        slope = g @ step
        t = 1.0
        while True:
            f_new, g_new = value_grad(x + t * step)
            if f_new <= f + 1e-4 * t * slope:
                break
            # near the optimum f stops changing in float64: a smaller gradient also counts
            if f_new <= f + 1e-12 * abs(f) and np.linalg.norm(g_new) < gnorm:
                break
            if t < 1e-12:  # rounding floor reached: no further progress
                return x
            t *= 0.5
        x, f, g = x + t * step, f_new, g_new
    return x


def top_eigenvalue(hv: Operator, dim: int, seed: int, *, iters: int = 200) -> float:
    """Largest eigenvalue of a symmetric positive semidefinite operator by power iteration."""
    v = np.random.default_rng(seed).standard_normal(dim)
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(iters):
        w = hv(v)
        lam_new = float(v @ w)
        norm = np.linalg.norm(w)
        if norm == 0.0:
            return 0.0
        v = w / norm
        if abs(lam_new - lam) <= 1e-9 * lam_new:
            return lam_new
        lam = lam_new
    return lam

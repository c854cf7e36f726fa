"""The training loop: step, measure f(x̄) − f* and the ledgers, stop at ε; bounds on bits."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.optim.base import PHASES, Optimizer

__all__ = ["ARRAYS", "average_model", "lower_bound_bits", "print_progress", "train"]

ARRAYS = ("iter", "objective", "subopt", "consensus", "bits", "time_s", "t_compute_s",
          "t_encode_s", "t_comm_s", "t_decode_s")  # fmt: skip


def lower_bound_bits(d: int, eps: float) -> float:
    """d·(log2 d + log2(1/ε)): the Ω(d(log d + log 1/ε)) bound with every constant 1."""
    return d * (math.log2(max(d, 2)) + max(0.0, math.log2(1.0 / eps)))


def average_model(opt: Optimizer) -> np.ndarray:
    """x̄, the mean of the ranks' models (a measurement allreduce unless replicated)."""
    model = opt.model()
    if opt.replicated:
        return model
    xbar = np.empty_like(model)
    opt.comm.Allreduce(model, xbar)
    return xbar / opt.comm.size


def _measure(opt: Optimizer, f_star: float | None, wall: float) -> list[float]:
    """[objective, subopt, consensus, bits per rank, messages per rank, wall, *phases].

    Measurement only: these reductions are neither counted in bits nor timed.
    """
    comm, p = opt.comm, opt.comm.size
    model, xbar = opt.model(), average_model(opt)
    sums = np.array([
        opt.problem.loss_local(xbar), float(np.sum((model - xbar) ** 2)),
        8.0 * opt.ledger.bytes, opt.ledger.messages,
    ])  # fmt: skip
    comm.Allreduce(MPI.IN_PLACE, sums)
    sums /= p
    times = np.array([wall, *(opt.ledger.t[k] for k in PHASES)])
    comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    obj = float(sums[0])
    subopt = obj - f_star if f_star is not None else obj
    return [obj, subopt, float(sums[1]), float(sums[2]), float(sums[3]), *times.tolist()]


def train(
    opt: Optimizer,
    *,
    eps: float,
    max_iters: int,
    f_star: float | None,
    eval_every: int = 1,
    progress: Callable[[int, list[float]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run until f(x̄) − f* ≤ ε (the loss ≤ ε when f* is unknown) or ``max_iters`` steps."""
    rows = [[0.0, *_measure(opt, f_star, 0.0)]]
    wall, it = 0.0, 0
    stride = eval_every * max(1, max_iters // (20 * eval_every))  # about 20 progress lines
    reached = rows[0][2] <= eps
    while not reached and it < max_iters:
        t0 = MPI.Wtime()
        opt.step(it)
        wall += MPI.Wtime() - t0
        it += 1
        if it % eval_every == 0 or it == max_iters:
            rows.append([float(it), *_measure(opt, f_star, wall)])
            reached = rows[-1][2] <= eps
            if not math.isfinite(rows[-1][2]):
                break
            if progress is not None and (it % stride == 0 or reached):
                progress(it, rows[-1])
    table = np.array(rows)
    arrays = {
        name: table[:, k].astype(np.int64) if name == "iter" else table[:, k]
        for name, k in zip(ARRAYS, (0, 1, 2, 3, 4, 6, 7, 8, 9, 10), strict=True)
    }
    last = rows[-1]
    d = opt.problem.dim
    fields = {
        "reached": bool(reached),
        "iters": it,
        "iters_to_eps": it if reached else None,
        "bits_to_eps": last[4] if reached else None,
        "time_to_eps_s": last[6] if reached else None,
        "final_subopt": last[2],
        "final_objective": last[1],
        "final_consensus": last[3],
        "bits": last[4],
        "wire_bytes": round(last[4] / 8),
        "messages": last[5],
        "fp32_bits": last[5] * 32.0 * d,
        "lower_bound_bits": lower_bound_bits(d, eps),
        "time_s": last[6],
    }
    fields.update(zip(ARRAYS[6:], last[7:], strict=True))
    return fields, arrays


def print_progress(it: int, row: list[float]) -> None:
    """One line on stderr: iteration, suboptimality, bits per rank (``row`` as measured)."""
    print(f"  iter {it:6d}  subopt {row[2]:.3e}  bits {row[4]:.3e}", file=sys.stderr, flush=True)

"""The training loop: step, measure f(x̄) − f* and the ledgers, stop at ε; why a run stopped
short of ε; lower bounds on the bits."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.bench.guard import Interrupted, SweepGuard
from hpcopt.optim.base import PHASES, Optimizer

__all__ = [
    "ARRAYS",
    "Trajectory",
    "average_model",
    "diagnose",
    "lower_bound_bits",
    "print_progress",
    "survey_bound_bits",
    "train",
]

ARRAYS = ("iter", "objective", "subopt", "consensus", "bits", "time_s", "t_compute_s",
          "t_encode_s", "t_comm_s", "t_decode_s")  # fmt: skip
# Row layout: iteration, objective, subopt, consensus, bits, messages, wall, phases...
_COLUMNS = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)
DIVERGED_FACTOR = 10.0  # f − f* above this many times its start: diverged
PLATEAU_SHARE = 0.25  # flat over at least this share of the run: a plateau
PLATEAU_BAND = 1.05  # "flat": within 5 % of the level of the last tenth of the run
CHECKPOINT_S = 2.0  # the record in the log is brought up to date this often


def log2_inverse(eps: float) -> float:
    """log2(1/ε), 0 for ε ≥ 1 (ε = inf included)."""
    return math.log2(1.0 / eps) if eps < 1.0 else 0.0


def lower_bound_bits(d: int, eps: float) -> float:
    """d·(log2 d + log2(1/ε)): Tsitsiklis & Luo's Ω(d(log d + log 1/ε)), every constant 1."""
    return d * (math.log2(max(d, 2)) + log2_inverse(eps))


def survey_bound_bits(ranks: int, d: int, eps: float) -> float:
    """(n − 1)·d·log2(1/ε) bits in total over n ranks, constant 1."""
    return (ranks - 1) * d * log2_inverse(eps)


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


def diagnose(iters: np.ndarray, subopt: np.ndarray) -> tuple[str, str]:
    """Why a run that did not reach ε stopped: (outcome, one line).

    ``diverged`` (not finite, or above DIVERGED_FACTOR× the start), ``plateau`` (within
    PLATEAU_BAND of the level of its last tenth for at least PLATEAU_SHARE of the run), else
    ``budget`` (still decreasing when the iterations ran out).
    """
    last, first = float(subopt[-1]), float(subopt[0])
    end = int(iters[-1])
    if not math.isfinite(last):
        return "diverged", f"diverged: f − f* became {last} at iteration {end}"
    if first > 0 and last > DIVERGED_FACTOR * first:
        return "diverged", f"diverged: f − f* = {last:.3g} at iteration {end}, from {first:.3g}"
    tail = subopt[-max(1, len(subopt) // 10) :]
    level = float(np.median(tail))
    since = int(iters[int(np.argmax(subopt <= PLATEAU_BAND * level))])
    if end > 0 and end - since >= PLATEAU_SHARE * end:
        return "plateau", f"plateau at f − f* = {level:.3g} since iteration {since}"
    back = max(0, int(np.searchsorted(iters, end - max(1, end // 4), side="right")) - 1)
    return "budget", (
        f"budget exhausted while still decreasing: f − f* = {last:.3g} at iteration {end}, "
        f"{float(subopt[back]):.3g} at iteration {int(iters[back])}"
    )


class Trajectory:
    """The rows measured so far and the stopping rule; feeds progress lines and checkpoints."""

    def __init__(
        self,
        opt: Optimizer,
        *,
        eps: float,
        max_iters: int,
        f_star: float | None,
        eval_every: int = 1,
        progress: Callable[[int, list[float]], None] | None = None,
        checkpoint: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None,
    ) -> None:
        self.opt, self.eps, self.max_iters, self.f_star = opt, eps, max_iters, f_star
        self.eval_every = eval_every
        self.progress, self.checkpoint = progress, checkpoint
        self.stride = eval_every * max(1, max_iters // (20 * eval_every))  # ~20 progress lines
        self.rows: list[list[float]] = []
        self.printed = 0  # the last progress line's iteration, rounded down to the stride
        self.saved_at = -math.inf

    @property
    def reached(self) -> bool:
        return bool(self.rows) and self.rows[-1][2] <= self.eps

    def add(self, it: int, row: list[float]) -> bool:
        """Record the measurement at iteration ``it``; True when the run should stop."""
        self.rows.append([float(it), *row])
        subopt = row[1]
        stop = self.reached or it >= self.max_iters or not math.isfinite(subopt)
        first = self.rows[0][2]
        stop = stop or (first > 0 and subopt > DIVERGED_FACTOR * first)
        if self.progress is not None and it and (it >= self.printed + self.stride or stop):
            self.printed = it - it % self.stride
            self.progress(it, self.rows[-1])
        now = MPI.Wtime()
        if self.checkpoint is not None and now - self.saved_at >= CHECKPOINT_S and not stop:
            self.saved_at = now
            self.checkpoint(*self.result("running"))
        return stop

    def result(self, outcome: str | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The record fields and arrays of the rows so far."""
        table = np.array(self.rows)
        arrays = {
            name: table[:, k].astype(np.int64) if name == "iter" else table[:, k]
            for name, k in zip(ARRAYS, _COLUMNS, strict=True)
        }
        last, reached, it = self.rows[-1], self.reached, int(self.rows[-1][0])
        if outcome is None:
            outcome, note = ("reached", f"reached eps at iteration {it}") if reached else (
                diagnose(arrays["iter"], arrays["subopt"]))  # fmt: skip
        else:
            note = f"{outcome} at iteration {it}"
        d, p = self.opt.problem.dim, self.opt.comm.size
        fields = {
            "reached": reached, "reached_eps": reached, "outcome": outcome, "outcome_note": note,
            "iters": it, "iters_to_eps": it if reached else None,
            "bits_to_eps": last[4] if reached else None,
            "time_to_eps_s": last[6] if reached else None,
            "final_subopt": last[2], "final_objective": last[1], "final_consensus": last[3],
            "bits": last[4], "wire_bytes": round(last[4] / 8), "messages": last[5],
            "fp32_bits": last[5] * 32.0 * d, "lower_bound_bits": lower_bound_bits(d, self.eps),
            "survey_bound_bits": survey_bound_bits(p, d, self.eps), "time_s": last[6],
        }  # fmt: skip
        fields.update(zip(ARRAYS[6:], last[7:], strict=True))
        return fields, arrays


def _synchronous(opt: Optimizer, track: Trajectory, guard: SweepGuard | None) -> None:
    """Step, and measure every ``eval_every`` steps, until the trajectory says stop. With a
    ``guard``, each stretch between measurements is watched and a signal stops the run at
    the next measurement on every rank."""
    wall, it = 0.0, 0
    stop = track.add(0, _measure(opt, track.f_star, 0.0))
    while not stop:
        if guard is not None:
            guard.arm(it + 1, f"train {opt.name} after iteration {it}")
        t0 = MPI.Wtime()
        opt.step(it)
        wall += MPI.Wtime() - t0
        it += 1
        if it % track.eval_every == 0 or it == track.max_iters:
            stop = track.add(it, _measure(opt, track.f_star, wall))
            if guard is not None:
                guard.disarm()
                guard.stop_requested()


def train(
    opt: Optimizer,
    *,
    eps: float,
    max_iters: int,
    f_star: float | None,
    eval_every: int = 1,
    progress: Callable[[int, list[float]], None] | None = None,
    checkpoint: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None,
    guard: SweepGuard | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run until f(x̄) − f* ≤ ε (the loss ≤ ε when f* is unknown), ``max_iters`` steps, or
    divergence. ``checkpoint`` receives the record so far every few seconds (and, on an
    interrupt, with outcome ``interrupted``); ``guard`` watches synchronous runs for hangs
    and stops them at a measurement when a signal arrives."""
    track = Trajectory(
        opt, eps=eps, max_iters=max_iters, f_star=f_star, eval_every=eval_every,
        progress=progress, checkpoint=checkpoint,
    )  # fmt: skip
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if opt.drives_itself:
                opt.drive(track)
            else:
                _synchronous(opt, track, guard)
    except (KeyboardInterrupt, Interrupted):
        if checkpoint is not None and track.rows:
            checkpoint(*track.result("interrupted"))
        raise
    return track.result()


def print_progress(it: int, row: list[float]) -> None:
    """One line on stderr: iteration, suboptimality, bits per rank (``row`` as measured)."""
    print(f"  iter {it:6d}  subopt {row[2]:.3e}  bits {row[4]:.3e}", file=sys.stderr, flush=True)

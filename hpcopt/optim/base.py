"""What every distributed optimizer shares: its settings, byte/time ledger and helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives import get_algorithm
from hpcopt.compressed import compressed_allreduce
from hpcopt.encoders import ErrorFeedback, Payload, get_encoder
from hpcopt.problems import Problem

__all__ = ["PHASES", "Config", "Ledger", "Optimizer"]

PHASES = ("compute", "encode", "communicate", "decode")


@dataclass(frozen=True)
class Config:
    """Every knob of every algorithm; each algorithm reads the ones it uses."""

    lr: float
    batch: int = 0  # 0: full local gradient
    encoder: str = "none"
    ef: bool = False
    topology: str | None = None
    exchange: str = "p2p"  # p2p or neighbor (gossip)
    local_steps: int = 1
    participation: float = 1.0
    stragglers: float = 0.0
    straggler_delay: float = 0.0
    gamma: float = 1.0
    alpha: float = 0.1
    tau: int = 4
    method: str = "auto"
    allreduce: str = "native"
    seed: int = 0


class Ledger:
    """Bytes handed to MPI, d-vector messages sent and seconds per phase on this rank."""

    __slots__ = ("bytes", "messages", "t")

    def __init__(self) -> None:
        self.bytes = 0
        self.messages = 0.0
        self.t = dict.fromkeys(PHASES, 0.0)

    def add(self, nbytes: int, times: dict[str, float], messages: float = 1.0) -> None:
        """Account one communication: its bytes, message count and phase times."""
        self.bytes += int(nbytes)
        self.messages += messages
        for key, value in times.items():
            self.t[key] += value

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block into phase ``name``."""
        t0 = MPI.Wtime()
        try:
            yield
        finally:
            self.t[name] += MPI.Wtime() - t0


class Optimizer:
    """One rank's state of a distributed algorithm: ``step(it)`` is one outer iteration."""

    name: ClassVar[str] = ""
    replicated: ClassVar[bool] = False  # all ranks hold the same model after every step

    def __init__(self, comm: MPI.Comm, problem: Problem, cfg: Config) -> None:
        self.comm, self.problem, self.cfg = comm, problem, cfg
        self.x = problem.init_point().astype(np.float64)
        self.ledger = Ledger()
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x0B7, comm.rank]))
        self.encoder = get_encoder(cfg.encoder, seed=cfg.seed, rank=comm.rank)
        self.two_stage = bool(getattr(self.encoder, "two_stage", False))
        wrap = cfg.ef and not self.two_stage
        self.codec: Any = ErrorFeedback(self.encoder) if wrap else self.encoder
        self.residual: np.ndarray | None = None  # PowerSGD's error feedback
        self.scratch: dict[int, Scratch] = {}

    def step(self, it: int) -> None:
        """One outer iteration (an SGD step, a local round, a gossip step)."""
        raise NotImplementedError

    def model(self) -> np.ndarray:
        """This rank's model; the evaluation point is its average over ranks."""
        return self.x

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """A stochastic (``batch`` > 0) or full local gradient, timed as compute."""
        with self.ledger.phase("compute"):
            batch = None
            if self.cfg.batch > 0:
                batch = self.problem.sample_batch(self.rng, self.cfg.batch)
            return self.problem.grad_local(x, batch)

    def allreduce_sum(self, v: np.ndarray, step: int, comm: MPI.Comm | None = None) -> np.ndarray:
        """Σ over ranks of float32 ``v`` through the encoder; bytes and times go to the ledger."""
        comm = comm or self.comm
        scratch = self.scratch.setdefault(comm.size, Scratch())
        if self.two_stage and self.cfg.ef:
            return self._powersgd_ef(comm, v, step, scratch)
        res = compressed_allreduce(
            comm, v, self.codec, method=self.cfg.method, step=step,
            algorithm=self.cfg.allreduce, scratch=scratch,
        )  # fmt: skip
        self.ledger.add(res.nbytes, res.times)
        return np.asarray(res.out, dtype=np.float32).reshape(-1)

    def _powersgd_ef(
        self, comm: MPI.Comm, v: np.ndarray, step: int, scratch: Scratch
    ) -> np.ndarray:
        """compressed.powersgd's two sums, plus error feedback from the local rank-r approximation.

        The local Q (before its sum) is needed for the residual, so the stages run here.
        """
        enc, run, phase = self.encoder, get_algorithm(self.cfg.allreduce).run, self.ledger.phase
        with phase("encode"):
            if self.residual is None:
                self.residual = np.zeros(v.size, dtype=np.float32)
            v = v + self.residual
            p = enc.project(v, step)
        with phase("communicate"):
            nbytes = run(comm, p.reshape(-1), op=MPI.SUM, scratch=scratch)
        with phase("encode"):
            q = enc.reproject(p)
            mine = q.copy()
        with phase("communicate"):
            nbytes += run(comm, q.reshape(-1), op=MPI.SUM, scratch=scratch)
        with phase("decode"):
            out = np.asarray(enc.reconstruct(q), dtype=np.float32).reshape(-1)
            local = enc.decode(Payload((p.reshape(-1), mine.reshape(-1)), v.shape))
            np.subtract(v, local.reshape(-1), out=self.residual)
        self.ledger.add(nbytes, {})
        return out

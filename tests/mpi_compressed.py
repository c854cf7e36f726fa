"""Multi-rank check of every compressed allreduce path against an exact reference.

Run as ``mpiexec -n N python tests/mpi_compressed.py``; prints from rank 0 only and
exits nonzero when any check fails on any rank. Each path is replayed serially (every
rank simulates all ranks' encoders) and must match bit for bit where the summation
order is fixed (allgather, two-phase, vote), within float rounding otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.compressed import compressed_allreduce
from hpcopt.encoders import Encoder, ErrorFeedback, Payload, get_encoder, register

SPECS = [
    "none", "fp16", "bf16", "qsgd", "qsgd:levels=127,bucket=64", "qsgd-elias", "terngrad",
    "sign", "natural", "topk:ratio=0.1", "topk:ratio=0.1,delta=1", "randomk:ratio=0.25",
    "randomk:ratio=0.25,scaled=1", "dgc:ratio=0.1", "powersgd:r=2", "fat",
]  # fmt: skip
# Loose sanity bound: ‖out − exact‖ ≤ TOL · Σ‖x_i‖ (the replays are the strict checks).
TOL = {"none": 1e-6, "fp16": 2e-3, "bf16": 2e-2}
SEED = 7


class Fat(Encoder):
    """A user encoder with data-dependent size above 8 bytes per element (float64 twice)."""

    name = "fat"

    def encode(self, x: np.ndarray, step: int = 0) -> Payload:
        wide = x.reshape(-1).astype(np.float64)
        return Payload((wide, wide.copy()), x.shape, step)

    def decode(self, payload: Payload, out: np.ndarray | None = None) -> np.ndarray:
        res = (payload.buffers[0] + payload.buffers[1]) / 2
        return res.astype(np.float32).reshape(payload.shape)

    def layout(self, d: int, nbytes: int) -> list[tuple[np.dtype, int]]:
        return [(np.dtype(np.float64), d), (np.dtype(np.float64), d)]


register("fat", Fat)


def data(rank: int, d: int) -> np.ndarray:
    """Rank ``rank``'s input vector."""
    return np.random.default_rng([SEED, rank]).standard_normal(d).astype(np.float32)


def encoders(spec: str, p: int) -> list[Any]:
    """One encoder per simulated rank."""
    return [get_encoder(spec, seed=SEED, rank=i) for i in range(p)]


def replay_allgather(spec: str, p: int, d: int, step: int) -> tuple[np.ndarray, list[int]]:
    """Rank-order sum of every rank's decoded payload, and the payload sizes."""
    out = np.zeros(d, dtype=np.float32)
    sizes = []
    for i, enc in enumerate(encoders(spec, p)):
        payload = enc.encode(data(i, d), step)
        sizes.append(payload.nbytes)
        out += enc.decode(payload)
    return out, sizes


def replay_two_phase(spec: str, p: int, d: int, step: int, me: int) -> tuple[np.ndarray, int]:
    """The two-phase result and the bytes rank ``me`` sends."""
    b = [j * d // p for j in range(p + 1)]
    encs = encoders(spec, p)
    xs = [data(i, d) for i in range(p)]
    out = np.empty(d, dtype=np.float32)
    sent = 0
    for j in range(p):
        acc = xs[j][b[j] : b[j + 1]].copy()
        for i in range(p):
            if i != j:
                payload = encs[i].encode(xs[i][b[j] : b[j + 1]], step * (p + 1) + j)
                sent += payload.nbytes if i == me else 0
                acc += encs[j].decode(payload)
        payload = encs[j].encode(acc, step * (p + 1) + p)
        sent += (payload.nbytes + 8) * (p - 1) if j == me else 0
        out[b[j] : b[j + 1]] = encs[j].decode(payload)
    return out, sent + 8 * (p - 1)


def replay_vote(p: int, d: int, step: int) -> np.ndarray:
    """Majority vote of the sign payloads."""
    votes = np.zeros(d, dtype=np.int64)
    total = 0.0
    for i, enc in enumerate(encoders("sign", p)):
        y = enc.decode(enc.encode(data(i, d), step))
        votes += np.sign(y).astype(np.int64)
        total += float(np.abs(y[0])) if d else 0.0
    return np.sign(votes).astype(np.float32) * np.float32(total)


def replay_powersgd(spec: str, p: int, d: int, step: int) -> np.ndarray:
    """PowerSGD's two summed stages, serially."""
    encs = encoders(spec, p)
    ps = [e.project(data(i, d), step) for i, e in enumerate(encs)]
    total_p = np.sum(ps, axis=0)
    qs = []
    for e, p_i in zip(encs, ps, strict=True):
        p_i[...] = total_p
        qs.append(e.reproject(p_i).copy())
    return encs[0].reconstruct(np.sum(qs, axis=0))


class Checker:
    """Collects failures on this rank."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.failures: list[str] = []
        self.count = 0

    def check(self, ok: bool, what: str) -> None:
        self.count += 1
        if not ok:
            self.failures.append(what)

    def same_everywhere(self, out: np.ndarray, what: str) -> None:
        ref = out.copy()
        self.comm.Bcast(ref, root=0)
        self.check(np.array_equal(ref, out, equal_nan=True), f"{what}: ranks disagree")


def close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """‖a − b‖ ≤ tol·(‖b‖ + 1)."""
    return float(np.linalg.norm(a - b)) <= tol * (float(np.linalg.norm(b)) + 1.0)


def run_spec(ck: Checker, spec: str, d: int, step: int) -> None:
    """All paths of one encoder at one size."""
    comm = ck.comm
    p, me = comm.size, comm.rank
    x = data(me, d)
    exact = sum(data(i, d) for i in range(p))
    scale = sum(float(np.linalg.norm(data(i, d))) for i in range(p)) + 1e-30
    enc = get_encoder(spec, seed=SEED, rank=me)
    tag = f"{spec} d={d} p={p}"
    if enc.two_stage:
        res = compressed_allreduce(comm, x, enc, step=step)
        ck.check(close(res.out, replay_powersgd(spec, p, d, step), 1e-4), f"{tag} powersgd")
        ck.same_everywhere(res.out, f"{tag} powersgd")
        return
    res = compressed_allreduce(comm, x, enc, method="allgather", step=step)
    want, sizes = replay_allgather(spec, p, d, step)
    ck.check(np.array_equal(res.out, want), f"{tag} allgather != replay")
    ck.check(res.nbytes == (sizes[me] + 8) * (p - 1), f"{tag} allgather bytes {res.nbytes}")
    ck.same_everywhere(res.out, f"{tag} allgather")
    name = spec.partition(":")[0]
    if name in TOL:
        ck.check(float(np.linalg.norm(res.out - exact)) <= TOL[name] * scale, f"{tag} error")
    res = compressed_allreduce(comm, x, get_encoder(spec, seed=SEED, rank=me), method="two-phase",
                               step=step)  # fmt: skip
    want, sent = replay_two_phase(spec, p, d, step, me)
    ck.check(np.array_equal(res.out, want), f"{tag} two-phase != replay")
    ck.check(res.nbytes == sent, f"{tag} two-phase bytes {res.nbytes} != {sent}")
    ck.same_everywhere(res.out, f"{tag} two-phase")
    if enc.summable:
        run_summable(ck, spec, d, step, x)


def run_summable(ck: Checker, spec: str, d: int, step: int, x: np.ndarray) -> None:
    """The summable path with the native and a point-to-point algorithm."""
    comm = ck.comm
    p = comm.size
    want, _ = replay_allgather(spec, p, d, step)
    name = spec.partition(":")[0]
    algos = ["native"] if name == "bf16" else ["native", "ring", "recursive-doubling"]
    tol = {"fp16": 2e-3 * p, "bf16": 1e-2 * p}.get(name, 1e-5)
    for algo in algos:
        enc = get_encoder(spec, seed=SEED, rank=comm.rank)
        res = compressed_allreduce(comm, x, enc, method="summable", algorithm=algo, step=step)
        tag = f"{spec} d={d} p={p} summable/{algo}"
        ck.check(close(res.out, want, tol), f"{tag} != replay")
        ck.same_everywhere(res.out, tag)


def run_vote(ck: Checker, d: int) -> None:
    """Majority vote of signs against its replay."""
    comm = ck.comm
    enc = get_encoder("sign", seed=SEED, rank=comm.rank)
    res = compressed_allreduce(comm, data(comm.rank, d), enc, method="vote", step=3)
    ck.check(np.array_equal(res.out, replay_vote(comm.size, d, 3)), f"vote d={d}")


def run_ef(ck: Checker, d: int) -> None:
    """Error feedback through allgather: the residual carries exactly what was lost."""
    comm = ck.comm
    ef = ErrorFeedback(get_encoder("topk:ratio=0.05", seed=SEED, rank=comm.rank))
    sent_sum = np.zeros(d, dtype=np.float64)
    for step in range(5):
        x = data(comm.rank, d)
        res = compressed_allreduce(comm, x, ef, method="allgather", step=step)
        sent_sum += res.out
    local = 5 * sum(data(i, d).astype(np.float64) for i in range(comm.size))
    resid = np.zeros(d)
    comm.Allreduce(ef.residual.astype(np.float64), resid)
    ck.check(np.allclose(sent_sum + resid, local, atol=1e-3), f"ef topk d={d} conservation")
    ef = ErrorFeedback(get_encoder("randomk:ratio=0.1", seed=SEED, rank=comm.rank))
    sent_sum[...] = 0
    for step in range(5):
        res = compressed_allreduce(comm, data(comm.rank, d), ef, method="summable", step=step)
        sent_sum += res.out
    comm.Allreduce(ef.residual.astype(np.float64), resid)
    ck.check(np.allclose(sent_sum + resid, local, atol=1e-3), f"ef randomk d={d} summable")


def main() -> int:
    """Run every check; 0 when all ranks passed."""
    comm = MPI.COMM_WORLD
    ck = Checker(comm)
    for d in (1000, 5, 0):
        for spec in SPECS:
            run_spec(ck, spec, d, step=2)
        run_vote(ck, d)
        if d:
            run_ef(ck, d)
    failures = comm.gather(ck.failures, root=0)
    bad = comm.allreduce(len(ck.failures))
    if comm.rank == 0:
        flat = sorted({f for fs in failures or [] for f in fs})
        for line in flat:
            print("FAIL", line)
        print(f"mpi_compressed: {ck.count} checks per rank at p={comm.size}, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

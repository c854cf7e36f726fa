"""Every compressed aggregation path against a serial replay and the exact sum.

Each path is replayed serially (every rank simulates all ranks' encoders) and must match
bit for bit where the summation order is fixed (allgather, two-phase, vote), within
float rounding otherwise. Run by tests/e2e/test_mpi_modules.py at several rank counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.aggregation import aggregate, plan
from hpcopt.encoders import Encoder, Payload, get_encoder, register

pytestmark = pytest.mark.mpi
COMM = MPI.COMM_WORLD
SIZES = (1000, 5, 0, 1, 70_001)  # 70_001: more than one block of the fused decode-and-sum

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


def run(comm: MPI.Comm, x: np.ndarray, spec: str, step: int, **how: Any) -> Any:
    """The aggregation of ``x`` along the plan for ``spec`` with ``how`` (method, ef, ...)."""
    chosen = plan(spec, **how)
    return aggregate(comm, x, chosen.codec(seed=SEED, rank=comm.rank), chosen, step=step)


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


def close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """‖a − b‖ ≤ tol·(‖b‖ + 1)."""
    return float(np.linalg.norm(a - b)) <= tol * (float(np.linalg.norm(b)) + 1.0)


def same_everywhere(out: np.ndarray, what: str) -> None:
    ref = out.copy()
    COMM.Bcast(ref, root=0)
    assert_everywhere(COMM, np.array_equal(ref, out, equal_nan=True), f"{what}: ranks disagree")


GATHERED = [s for s in SPECS if not s.startswith("powersgd")]


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("spec", GATHERED)
def test_allgather_equals_the_replay(spec: str, d: int) -> None:
    p, me, step = COMM.size, COMM.rank, 2
    res = run(COMM, data(me, d), spec, step, method="allgather")
    want, sizes = replay_allgather(spec, p, d, step)
    tag = f"{spec} d={d} p={p}"
    assert_everywhere(COMM, np.array_equal(res.out, want), f"{tag} allgather != replay")
    assert_everywhere(COMM, res.nbytes == (sizes[me] + 8) * (p - 1), f"{tag} bytes {res.nbytes}")
    same_everywhere(res.out, tag)
    name = spec.partition(":")[0]
    if name in TOL:
        exact = sum(data(i, d) for i in range(p))
        scale = sum(float(np.linalg.norm(data(i, d))) for i in range(p)) + 1e-30
        err = float(np.linalg.norm(res.out - exact))
        assert_everywhere(COMM, err <= TOL[name] * scale, f"{tag} error {err}")


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("spec", GATHERED)
def test_two_phase_equals_the_replay(spec: str, d: int) -> None:
    p, me, step = COMM.size, COMM.rank, 2
    res = run(COMM, data(me, d), spec, step, method="two-phase")
    want, sent = replay_two_phase(spec, p, d, step, me)
    tag = f"{spec} d={d} p={p} two-phase"
    assert_everywhere(COMM, np.array_equal(res.out, want), f"{tag} != replay")
    assert_everywhere(COMM, res.nbytes == sent, f"{tag} bytes {res.nbytes} != {sent}")
    same_everywhere(res.out, tag)


SUMMABLE = [s for s in GATHERED if get_encoder(s).summable]


CORES = [
    (spec, algo)
    for spec in SUMMABLE
    for algo in ("native", "ring", "recursive-doubling")
    if algo == "native" or not spec.startswith("bf16")  # bf16: MPI's own Allreduce only
]


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("spec,algo", CORES)
def test_summable_path_equals_the_replay(spec: str, algo: str, d: int) -> None:
    name = spec.partition(":")[0]
    p, step = COMM.size, 2
    want, _ = replay_allgather(spec, p, d, step)
    res = run(COMM, data(COMM.rank, d), spec, step, method="summable", algorithm=algo)
    tol = {"fp16": 2e-3 * p, "bf16": 1e-2 * p}.get(name, 1e-5)
    tag = f"{spec} d={d} p={p} summable/{algo}"
    assert_everywhere(COMM, close(res.out, want, tol), f"{tag} != replay")
    same_everywhere(res.out, tag)


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("spec", ["powersgd:r=2", "powersgd:r=1"])
def test_powersgd_equals_the_replay(spec: str, d: int) -> None:
    res = run(COMM, data(COMM.rank, d), spec, 2)
    tag = f"{spec} d={d} p={COMM.size}"
    assert_everywhere(COMM, close(res.out, replay_powersgd(spec, COMM.size, d, 2), 1e-4), tag)
    same_everywhere(res.out, tag)


@pytest.mark.parametrize("d", SIZES)
def test_vote_equals_the_replay(d: int) -> None:
    res = run(COMM, data(COMM.rank, d), "sign", 3, method="vote")
    assert_everywhere(COMM, np.array_equal(res.out, replay_vote(COMM.size, d, 3)), f"vote d={d}")


@pytest.mark.parametrize("spec,method", [("topk:ratio=0.05", "allgather"),
                                         ("randomk:ratio=0.1", "summable"),
                                         ("powersgd:r=1", "powersgd")])  # fmt: skip
def test_error_feedback_keeps_what_was_lost(spec: str, method: str) -> None:
    """Σ_steps out + Σ_ranks residual = Σ_steps Σ_ranks x: nothing is lost or made up."""
    d, steps = 1000, 5
    chosen = plan(spec, ef=True, method=method)
    codec = chosen.codec(seed=SEED, rank=COMM.rank)
    sent_sum = np.zeros(d, dtype=np.float64)
    for step in range(steps):
        sent_sum += aggregate(COMM, data(COMM.rank, d), codec, chosen, step=step).out
    local = steps * sum(data(i, d).astype(np.float64) for i in range(COMM.size))
    resid = np.zeros(d)
    COMM.Allreduce(codec.residual.astype(np.float64), resid)  # type: ignore[attr-defined]
    ok = np.allclose(sent_sum + resid, local, atol=1e-3 * max(1, COMM.size))
    assert_everywhere(COMM, ok, f"ef {spec} {method}: conservation")

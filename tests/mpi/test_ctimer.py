"""Every operation the C core times leaves exactly the expected buffers, at any rank count.

Every rank builds every rank's deterministic data, so each rank simulates the whole
sequence of calls locally with NumPy (small integers: sums are exact) and compares its
own send and receive buffers with the simulation after the C-timed loop. Run by
tests/e2e/test_mpi_modules.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.errors import UsageError
from hpcopt.timer import TimedCall, operation, operations, status, time_call

pytestmark = pytest.mark.mpi
DTYPES = {"int32": (np.int32, MPI.INT32_T), "float64": (np.float64, MPI.DOUBLE)}
WARMUP, WINDOW = 1, 3
Buffers = list[list[np.ndarray]]  # [rank][set]


@dataclass(frozen=True)
class Case:
    """One configuration of one operation."""

    name: str
    count: int
    dtype: str = "int32"
    in_place: bool = False
    mode: str = "blocking"
    root: int = 0
    rotate: bool = False
    sets: int = 0  # 0: one set per call

    def calls(self, iters: int) -> int:
        return (WARMUP + iters) * (2 if self.mode == "nonblocking" else 1)


def initial(p: int, nsets: int, length: int, dtype: type, salt: int) -> Buffers:
    """Distinct small integers per rank, set and side."""
    idx = np.arange(length)
    return [
        [
            ((7 * r + 3 * s + 5 * salt + idx) % 11 + 1 + 20 * salt).astype(dtype)
            for s in range(nsets)
        ]
        for r in range(p)
    ]


def block(arr: np.ndarray, q: int, n: int) -> np.ndarray:
    return arr[q * n : (q + 1) * n]


def simulate_call(name: str, in_place: bool, S: list, R: list, root: int, n: int) -> None:
    """One call of ``name`` on every rank's buffers of one set, as MPI defines it."""
    p = len(S)
    src = [x.copy() for x in (R if in_place else S)]
    if name == "allreduce":
        total = sum(x[:n] for x in src)
        for r in range(p):
            R[r][:n] = total
    elif name == "allgather":
        for r in range(p):
            for q in range(p):
                block(R[r], q, n)[:] = block(src[q], q, n) if in_place else src[q][:n]
    elif name == "reduce_scatter_block":
        for r in range(p):
            R[r][:n] = sum(block(x, r, n) for x in src)
    elif name == "reduce":
        parts = [R[q] if in_place and q == root else S[q] for q in range(p)]
        R[root][:n] = sum(x[:n] for x in parts)
    elif name == "bcast":
        value = R[root][:n].copy()
        for r in range(p):
            R[r][:n] = value
    elif name == "alltoall":
        for r in range(p):
            for q in range(p):
                block(R[r], q, n)[:] = block(src[q], r, n)
    elif name == "gather":
        for q in range(p):
            if not (in_place and q == root):
                block(R[root], q, n)[:] = S[q][:n]
    elif name == "scatter":
        for r in range(p):
            if not (in_place and r == root):
                R[r][:n] = block(S[root], r, n)
    elif name in ("pingpong", "stream", "bibw"):
        half, m = p // 2, n * (1 if name == "pingpong" else WINDOW)
        for i in range(half):
            R[i + half][:m] = S[i][:m]
            if name != "stream":
                R[i][:m] = S[i + half][:m]


def expected_after(case: Case, S: Buffers, R: Buffers, iters: int) -> None:
    """Apply every call of the timed loop (warm-ups included) to all ranks' buffers."""
    p, nsets = len(S), len(S[0])
    for k in range(case.calls(iters)):
        root = k % p if case.rotate else case.root
        sets = [x[k % nsets] for x in S], [x[k % nsets] for x in R]
        simulate_call(case.name, case.in_place, *sets, root, case.count)


def run_case(comm: MPI.Comm, case: Case) -> list[str]:
    """Time one case in C and return what disagrees with the simulation."""
    p, rank, iters = comm.size, comm.rank, max(3, comm.size)
    dtype, mpitype = DTYPES[case.dtype]
    nsets = case.sets or case.calls(iters)
    length = case.count * max(p, WINDOW)
    S, R = initial(p, nsets, length, dtype, 0), initial(p, nsets, length, dtype, 1)
    send, recv = [x.copy() for x in S[rank]], [x.copy() for x in R[rank]]
    call = TimedCall(
        case.name, case.count, send, recv, datatype=mpitype, in_place=case.in_place,
        root=case.root, rotate_root=case.rotate, window=WINDOW, mode=case.mode,
    )  # fmt: skip
    samples, t_pure, t_compute = (np.full(iters, np.nan) for _ in range(3))
    time_call(comm, call, samples, warmup=WARMUP, t_pure=t_pure, t_compute=t_compute)
    expected_after(case, S, R, iters)
    problems = []
    # In place, reduce_scatter_block defines only the first block of the receive buffer.
    undefined_tail = case.name == "reduce_scatter_block" and case.in_place
    for side, got, want in (("send", send, S[rank]), ("recv", recv, R[rank])):
        span = slice(0, case.count) if undefined_tail and side == "recv" else slice(None)
        wrong = sum(
            int(np.count_nonzero(g[span] != w[span])) for g, w in zip(got, want, strict=True)
        )
        if wrong:
            problems.append(f"rank {rank}: {case}: {wrong} wrong {side} elements")
    filled = [samples] + ([t_pure, t_compute] if case.mode == "nonblocking" else [])
    if not all(np.all(np.isfinite(a) & (a >= 0)) for a in filled):
        problems.append(f"rank {rank}: {case}: samples not filled")
    return problems


def cases(p: int, modes: list[str]) -> list[Case]:
    """Every operation, in place and out of place, each mode, dtypes, counts, roots."""
    out = []
    for name in operations():
        info = operation(name)
        if info.neighborhood:  # needs a graph communicator: test_neighbor_allgather
            continue
        if info.pattern:
            if p % 2 == 0:
                out += [Case(name, n, dtype) for n in (0, 1, 5) for dtype in DTYPES]
            continue
        for in_place in (False, True) if info.has_in_place else (False,):
            roots = [(0, False), (p - 1, False), (0, True)] if info.rooted else [(0, False)]
            for root, rotate in roots:
                out += [
                    Case(name, n, dt, in_place, "blocking", root, rotate)
                    for n in (0, 1, 6)
                    for dt in DTYPES
                ]
                out += [Case(name, 5, "float64", in_place, m, root, rotate) for m in modes[1:]]
                if not (name == "reduce_scatter_block" and in_place):  # reuse needs a defined tail
                    out.append(Case(name, 3, in_place=in_place, root=root, rotate=rotate, sets=2))
    return out


def rotation_roots(comm: MPI.Comm) -> set[int]:
    """Roots seen by a rotated bcast: set k must hold the data of rank k % p."""
    calls = WARMUP + max(3, comm.size)
    recv = [np.full(4, 100 * comm.rank + s, dtype=np.int32) for s in range(calls)]
    call = TimedCall("bcast", 4, (), recv, datatype=MPI.INT32_T, rotate_root=True)
    time_call(comm, call, np.zeros(calls - WARMUP), warmup=WARMUP)
    return {int(buf[0]) // 100 for s, buf in enumerate(recv) if buf[0] % 100 == s}


def refusals(comm: MPI.Comm) -> list[str]:
    """Impossible calls are refused with a UsageError before anything runs."""
    a = np.zeros(8, np.uint8)
    bad = [
        TimedCall("bcast", 8, (a,), (a,), in_place=True),
        TimedCall("reduce", 8, (a,), (a,), root=comm.size),
        TimedCall("allreduce", 8, (a,), (a,), mode="sideways"),
        TimedCall("allreduce", 8, (a[:4],), (a,)),
        TimedCall("pingpong", 8, (a,), (a,), mode="nonblocking"),
        TimedCall("nosuch", 8, (a,), (a,)),
        TimedCall("neighbor_allgather", 8, (a,), (a,)),  # COMM_WORLD has no graph
    ]
    if comm.size % 2:
        bad.append(TimedCall("pingpong", 8, (a,), (a,)))
    missed = []
    for call in bad:
        try:
            time_call(comm, call, np.zeros(2))
            missed.append(f"not refused: {call.operation} {call.mode}")
        except UsageError as exc:
            assert "\n" not in str(exc)
    return missed


COMM = MPI.COMM_WORLD
STATE = status()
MODES = ["blocking", "nonblocking"] + (["persistent"] if STATE.persistent else [])


def test_the_core_is_available() -> None:
    assert_everywhere(COMM, STATE.available, f"C timer not available: {STATE.reason}")


@pytest.mark.parametrize("case", cases(COMM.size, MODES), ids=str)
def test_every_case_leaves_exact_buffers(case: Case) -> None:
    problems = run_case(COMM, case) if STATE.available else ["no core"]
    assert_everywhere(COMM, not problems, "; ".join(problems))


def test_root_rotation_reaches_every_root() -> None:
    roots = rotation_roots(COMM)
    assert_everywhere(COMM, roots == set(range(COMM.size)), f"rotated roots {sorted(roots)}")


def test_impossible_calls_are_refused_before_running() -> None:
    missed = refusals(COMM)
    assert_everywhere(COMM, not missed, "; ".join(missed))


def test_neighbor_allgather_on_a_ring_graph() -> None:
    """Every rank receives each set's block from each of its ring neighbours, in order."""
    p, rank = COMM.size, COMM.rank
    peers = sorted({(rank - 1) % p, (rank + 1) % p} - {rank})
    graph = COMM.Create_dist_graph_adjacent(peers, peers, reorder=False)
    send = [np.full(4, 10 * rank + s, np.int32) for s in range(2)]
    recv = [np.zeros(4 * len(peers), np.int32) for _ in range(2)]
    call = TimedCall("neighbor_allgather", 4, send, recv, datatype=MPI.INT32_T)
    time_call(graph, call, np.zeros(3), warmup=1)
    graph.Free()
    want = [np.repeat([10 * q + s for q in peers], 4).astype(np.int32) for s in range(2)]
    ok = all(np.array_equal(got, w) for got, w in zip(recv, want, strict=True))
    assert_everywhere(COMM, ok, f"neighbour blocks {recv} != {want}")

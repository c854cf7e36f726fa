"""Every allreduce algorithm against an exact local reference, at any rank count.

Each rank can compute every rank's input, so the expected result is reduced locally in
NumPy (never by MPI). Integers and the harness's exact-grid data must match exactly;
random floats within a rounding tolerance. Run by tests/e2e/test_mpi_modules.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.backend import Scratch
from hpcopt.bench.verify import fill_check_data
from hpcopt.collectives import ALLREDUCE, get_algorithm

pytestmark = pytest.mark.mpi

SPECS = (
    *ALLREDUCE.names(),
    "ring-pipelined:segment=256",
    "ring-pipelined:segment=24,window=64",
    "hierarchical:ppn=2",
    "hierarchical:ppn=3",
)
DTYPES = ("float32", "float64", "int32", "int64")
OPS = {"sum": (MPI.SUM, np.add), "max": (MPI.MAX, np.maximum), "min": (MPI.MIN, np.minimum)}


def counts(p: int) -> list[int]:
    """Count classes: 0, 1, fewer than ranks, odd, a large odd one."""
    return sorted({0, 1, max(p - 1, 0), 7, 4099})


def random_input(n: int, rank: int, dtype: str) -> np.ndarray:
    rng = np.random.default_rng([n, rank, len(dtype)])
    if np.dtype(dtype).kind == "i":
        return rng.integers(-1000, 1000, n).astype(dtype)
    return rng.standard_normal(n).astype(dtype)


def grid_input(n: int, rank: int, dtype: str) -> np.ndarray:
    x = np.empty(n, dtype)
    fill_check_data(x, rank)
    return x


def expected(inputs: list[np.ndarray], ufunc: np.ufunc) -> np.ndarray:
    """The reduction of every rank's input, in float64 for floats (then rounded once)."""
    wide = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in inputs]
    return ufunc.reduce(np.stack(wide), axis=0).astype(inputs[0].dtype)


def run(spec: str, comm: MPI.Comm, x: np.ndarray, op: MPI.Op) -> np.ndarray:
    algo = get_algorithm(spec)
    y = x.copy()
    if algo.out_of_place:
        out = np.empty_like(x)
        algo.run(comm, y, op=op, scratch=Scratch(), out=out)
        return out
    algo.run(comm, y, op=op, scratch=Scratch())
    return y


def mismatches(got: np.ndarray, want: np.ndarray, p: int, exact: bool) -> int:
    if exact or got.dtype.kind == "i":
        return int(np.count_nonzero(got != want))
    tol = 8 * p * np.finfo(got.dtype).eps * np.maximum(np.abs(want), 1)
    return int(np.count_nonzero(np.abs(got - want) > tol))


@pytest.fixture(params=["world", "self", "dup"])
def comm(request: pytest.FixtureRequest) -> Iterator[MPI.Comm]:
    if request.param == "dup":
        dup = MPI.COMM_WORLD.Dup()
        yield dup
        dup.Free()
    else:
        yield MPI.COMM_WORLD if request.param == "world" else MPI.COMM_SELF


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_matches_the_exact_reference(spec: str, dtype: str, comm: MPI.Comm) -> None:
    p, wrong = comm.size, []
    for n in counts(p):
        for make, exact in ((random_input, False), (grid_input, True)):
            inputs = [make(n, r, dtype) for r in range(p)]
            got = run(spec, comm, inputs[comm.rank], MPI.SUM)
            bad = mismatches(got, expected(inputs, np.add), p, exact)
            if bad:
                wrong.append(f"n={n} {make.__name__}: {bad} wrong")
    assert_everywhere(comm, not wrong, f"{spec} {dtype} sum on {p} ranks: {wrong}")


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", ["float32", "int64"])
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_are_exact(spec: str, dtype: str, op: str) -> None:
    comm = MPI.COMM_WORLD
    mpi_op, ufunc = OPS[op]
    wrong = []
    for n in counts(comm.size):
        inputs = [random_input(n, r, dtype) for r in range(comm.size)]
        got = run(spec, comm, inputs[comm.rank], mpi_op)
        bad = mismatches(got, expected(inputs, ufunc), comm.size, True)
        if bad:
            wrong.append(f"n={n}: {bad} wrong")
    assert_everywhere(comm, not wrong, f"{spec} {dtype} {op}: {wrong}")


@pytest.mark.parametrize("spec", ["ring", "rabenseifner"])
def test_the_reference_can_fail(spec: str) -> None:
    """A wrong input on one rank must be caught by the local reference."""
    comm = MPI.COMM_WORLD
    n = 64
    inputs = [grid_input(n, r, "float64") for r in range(comm.size)]
    planted = inputs[comm.rank].copy()
    if comm.rank == comm.size - 1:
        planted[3] += 1.0
    got = run(spec, comm, planted, MPI.SUM)
    assert_everywhere(comm, mismatches(got, expected(inputs, np.add), comm.size, True) > 0,
                      "a planted error went unnoticed")  # fmt: skip

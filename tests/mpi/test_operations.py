"""Every algorithm of every collective operation against the exact local reference.

Each rank regenerates every rank's deterministic data, so the expected result of each
operation is computed locally (``Operation.expected``), never by MPI. MPI's own calls are
checked the same way, which also checks the reference itself; a planted error shows that
the check can fail. The cases go through the kernels' own buffers and calls
(``hpcopt.kernels.collective``). Run by tests/e2e/test_mpi_modules.py at 1-5 ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere, communicators

from hpcopt.backend import get_backend
from hpcopt.collectives import ALLGATHER, COLLECTIVES, Collective, get_algorithm
from hpcopt.collectives.ring import ring_allgather
from hpcopt.kernels.collective import MOVEMENT_DTYPES, REDUCTION_DTYPES, CollectiveCase

pytestmark = pytest.mark.mpi

OPERATIONS = [name for name in COLLECTIVES if name != "allreduce"]  # allreduce: test_collectives
CPU = get_backend("cpu")


def counts(p: int) -> list[int]:
    """Elements per block: 0, 1, fewer than ranks, odd, a larger odd one."""
    return sorted({0, 1, max(p - 1, 0), 7, 1023})


def dtypes(owner: Collective) -> tuple[str, ...]:
    """Every dtype the operation's kernel takes."""
    return REDUCTION_DTYPES if owner.operation.reduces else MOVEMENT_DTYPES


def roots(owner: Collective, p: int) -> list[int | None]:
    """Fixed roots 0 and p-1, and rotation (None), for rooted operations."""
    return [0, p - 1, None] if owner.operation.rooted else [0]


def wrong_elements(comm: MPI.Comm, owner: Collective, spec: str, dtype: str, n: int,
                   root: int | None, op: str = "sum") -> int:  # fmt: skip
    """Run one call of ``spec`` through the kernel's buffers and return its wrong elements."""
    case = CollectiveCase(comm, owner, get_algorithm(spec, owner), dtype, CPU, op=op, root=root)
    size = n * case.itemsize if owner.name != "barrier" else 0
    return int(case.prepare(size).check()["wrong"])


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_algorithm_matches_the_exact_reference(name: str) -> None:
    owner = COLLECTIVES[name]
    for label, comm in communicators():
        p, problems = comm.size, []
        for spec in owner.names():
            for dtype in dtypes(owner):
                for n in counts(p):
                    for root in roots(owner, p):
                        bad = wrong_elements(comm, owner, spec, dtype, n, root)
                        if bad:
                            problems.append(f"{spec} {dtype} n={n} root={root}: {bad} wrong")
        assert_everywhere(comm, not problems, f"{name} on {label} ({p} ranks): {problems}")


@pytest.mark.parametrize("name", [n for n in OPERATIONS if COLLECTIVES[n].operation.reduces])
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_reductions(name: str, op: str) -> None:
    owner, comm = COLLECTIVES[name], MPI.COMM_WORLD
    problems = [
        f"{spec} n={n}"
        for spec in owner.names()
        for n in (1, 7, 64)
        if wrong_elements(comm, owner, spec, "int32", n, 0, op)
    ]
    assert_everywhere(comm, not problems, f"{name} {op}: {problems}")


def corrupting_allgather(comm: MPI.Comm, buf: np.ndarray, *, scratch=None) -> int:
    sent = ring_allgather(comm, buf, scratch=scratch)
    if buf.size and comm.rank == comm.size - 1:
        buf[-1] += 1
    return sent


def test_the_reference_can_fail() -> None:
    """An allgather that corrupts one element on the last rank is caught there."""
    owner = Collective(ALLGATHER.operation)
    owner.add("corrupting", corrupting_allgather, cost=ALLGATHER["ring"].info["cost"])
    comm = MPI.COMM_WORLD
    bad = wrong_elements(comm, owner, "corrupting", "float64", 5, 0)
    expected = 1 if comm.rank == comm.size - 1 else 0
    assert_everywhere(comm, bad == expected, f"planted error: {bad} wrong, {expected} expected")

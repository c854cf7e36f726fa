"""Nothing allocates in a timed loop: the allreduce kernel's timed calls, after warm-up,
allocate no buffer, for every uncompressed algorithm and every compressed path.

tracemalloc sees NumPy's array memory as well as Python objects. The timed calls of a
4 MiB message may together raise the traced peak by at most LIMIT bytes: a few Python
objects per call and a first-call cache, below any array sized by the message (top-k's
1 % of the input alone would be 40 KiB). Random-k is left out: it draws a new index set
(numpy.random.Generator.choice) every step.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.aggregation import plan
from hpcopt.backend import get_backend
from hpcopt.collectives import ALLREDUCE, get_algorithm
from hpcopt.encoders import kernels
from hpcopt.kernels.allreduce import CompressedAllreduceCase
from hpcopt.kernels.collective import CollectiveCase

pytestmark = pytest.mark.mpi
COMM = MPI.COMM_WORLD
SIZE = 4 << 20
LIMIT = 32 << 10
CALLS = 3

COMPRESSED = [
    ("none", False, "summable", "native"), ("none", False, "summable", "ring"),
    ("fp16", False, "summable", "native"), ("fp16", False, "summable", "ring"),
    ("bf16", False, "summable", "native"), ("sign", True, "allgather", "native"),
    ("sign", False, "vote", "native"), ("sign", False, "two-phase", "native"),
    ("qsgd", False, "allgather", "native"), ("qsgd", False, "two-phase", "native"),
    ("terngrad", False, "allgather", "native"), ("natural", False, "allgather", "native"),
    ("topk:ratio=0.01", True, "allgather", "native"), ("topk:ratio=0.01", False, "two-phase",
    "native"), ("dgc:ratio=0.01", True, "allgather", "native"),
    ("powersgd:r=2", True, "powersgd", "ring"),
]  # fmt: skip


def growth(call: Any) -> int:
    """Peak traced bytes above the start over CALLS calls of ``call``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def timed_growth(case: Any) -> int:
    prepared = case.prepare(SIZE)
    prepared.plan_calls(2 + CALLS, 1)
    for _ in range(2):
        prepared.run()
    COMM.Barrier()
    return growth(prepared.timed_call())


@pytest.mark.parametrize("algo", ALLREDUCE.names())
def test_uncompressed_algorithms(algo: str) -> None:
    case = CollectiveCase(COMM, ALLREDUCE, get_algorithm(algo), "float32", get_backend("cpu"))
    grew = timed_growth(case)
    assert_everywhere(COMM, grew <= LIMIT, f"{algo}: timed calls allocated {grew} B")


@pytest.mark.parametrize("spec,ef,method,algo", COMPRESSED)
def test_compressed_paths(spec: str, ef: bool, method: str, algo: str) -> None:
    if not kernels.compiled() and spec.split(":")[0] not in ("none", "fp16", "bf16"):
        pytest.skip("the NumPy reference kernels allocate block-sized temporaries")
    chosen = plan(spec, ef=ef, method=method, algorithm=algo)
    grew = timed_growth(CompressedAllreduceCase(COMM, get_backend("cpu"), chosen))
    assert_everywhere(COMM, grew <= LIMIT, f"{spec} ef={ef} {method}/{algo}: allocated {grew} B")

"""Allreduce algorithms: registry, spec parsing and schedules (correctness: tests/mpi)."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.collectives import ALLREDUCE, get_algorithm, parse_algorithms
from hpcopt.collectives._fold import largest_pof2, real_rank
from hpcopt.collectives._p2p import chunk_bounds
from hpcopt.errors import UsageError


@pytest.mark.parametrize("count,parts", [(0, 3), (1, 4), (7, 3), (10, 5), (1001, 7)])
def test_chunk_bounds_cover_everything_evenly(count: int, parts: int) -> None:
    bounds = chunk_bounds(count, parts)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == count and len(sizes) == parts
    assert sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("p", range(1, 17))
def test_fold_maps_new_ranks_onto_distinct_real_ranks(p: int) -> None:
    pof2 = largest_pof2(p)
    assert pof2 <= p < 2 * pof2
    players = {real_rank(n, p - pof2) for n in range(pof2)}
    assert len(players) == pof2 and max(players) < p


def test_all_lists_every_registered_algorithm() -> None:
    assert [a.name for a in parse_algorithms("all")] == ALLREDUCE.names()
    labels = [a.label for a in parse_algorithms("ring,ring-pipelined:segment=64K")]
    assert labels == ["ring", "ring-pipelined:segment=64K"]


@pytest.mark.parametrize(
    "spec", ["nope", "ring:segment=4", "ring-pipelined:segment=x", "hierarchical:ppn=0", ":"]
)
def test_bad_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        get_algorithm(spec)


def test_options_reach_the_function() -> None:
    algo = get_algorithm("ring-pipelined:segment=1K")
    assert algo.run.keywords == {"segment_bytes": 1024}


@pytest.mark.parametrize("name", ALLREDUCE.names())
def test_single_rank_is_identity_and_sends_nothing(name: str) -> None:
    algo = get_algorithm(name)
    x = np.arange(5, dtype=np.float64)
    out = np.empty_like(x) if algo.out_of_place else None
    kwargs = {"out": out} if algo.out_of_place else {}
    sent = algo.run(MPI.COMM_SELF, x, op=MPI.SUM, scratch=Scratch(), **kwargs)
    assert sent == 0
    np.testing.assert_array_equal(out if algo.out_of_place else x, np.arange(5.0))


def test_cached_schedules_are_bounded_and_reused() -> None:
    from hpcopt.backend import MAX_PLANS

    scratch = Scratch()
    built = []
    for i in range(3 * MAX_PLANS):
        scratch.plan(("k", i), lambda i=i: built.append(i) or i)
    assert len(scratch._plans) == MAX_PLANS
    assert scratch.plan(("k", 3 * MAX_PLANS - 1), lambda: built.append(-1)) == 3 * MAX_PLANS - 1
    assert -1 not in built

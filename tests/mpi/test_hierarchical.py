"""Hierarchical compressed aggregation and the adaptive encoder's agreement, at several ranks.

Node sums of grid data (1/8 steps) are exact in any order and in float16, so the
hierarchical result is replayed serially bit for bit: exact node sums, each node leader's
encoder on its node sum, the leaders' path in leader order. Nodes are emulated by ``ppn``
(blocks of consecutive ranks). Run by tests/e2e/test_mpi_modules.py at 1 to 5 ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.aggregation import aggregate, plan
from hpcopt.aggregation.adaptive import adaptive_of
from hpcopt.bench.verify import fill_check_data
from hpcopt.encoders import get_encoder

pytestmark = pytest.mark.mpi
COMM = MPI.COMM_WORLD
SEED = 5


def grid(rank: int, d: int, step: int = 0) -> np.ndarray:
    """Rank ``rank``'s input: values on a 1/8 grid, so that every partial sum is exact."""
    x = np.empty(d, dtype=np.float32)
    fill_check_data(x, rank, seed=step)
    return x


def nodes(p: int, ppn: int) -> list[list[int]]:
    """The ranks of each emulated node."""
    return [list(range(lo, min(lo + ppn, p))) for lo in range(0, p, ppn)]


def replay(spec: str, p: int, ppn: int, d: int, steps: int, ef: bool) -> np.ndarray:
    """The last step's hierarchical result: leaders' codecs (with memory) on exact node sums,
    decoded and summed in leader order (the allgather path)."""
    groups = nodes(p, ppn)
    codecs = [plan(spec, ef=ef).codec(seed=SEED, rank=i) for i in range(len(groups))]
    out = np.zeros(d, dtype=np.float32)
    for step in range(steps):
        out = np.zeros(d, dtype=np.float32)
        for leader, group in enumerate(groups):
            node_sum = sum(grid(r, d, step).astype(np.float64) for r in group).astype(np.float32)
            if len(groups) == 1:
                out += node_sum
                continue
            codec = codecs[leader]
            out += codec.decode(codec.encode(node_sum, step))
    return out


@pytest.mark.parametrize("intra", ["fp32", "fp16"])
@pytest.mark.parametrize("ppn", [1, 2, 3])
@pytest.mark.parametrize("leaders", ["auto", "allgather", "two-phase"])
def test_exact_encoder_equals_the_flat_sum(ppn: int, intra: str, leaders: str) -> None:
    """With encoder none the hierarchical sum equals the flat allreduce, bit for bit."""
    d, p = 1031, COMM.size
    x = grid(COMM.rank, d)
    method = f"hierarchical:ppn={ppn},intra={intra},leaders={leaders}"
    chosen = plan("none", method=method, algorithm="ring")
    res = aggregate(COMM, x, chosen.codec(rank=COMM.rank), chosen)
    flat = plan("none", algorithm="ring")
    want = aggregate(COMM, x.copy(), flat.codec(rank=COMM.rank), flat).out
    tag = f"{method} p={p}"
    assert_everywhere(COMM, np.array_equal(res.out, want), f"{tag}: != flat sum")
    exact = sum(grid(r, d).astype(np.float64) for r in range(p)).astype(np.float32)
    assert_everywhere(COMM, np.array_equal(res.out, exact), f"{tag}: != local exact sum")
    assert_everywhere(COMM, res.links is not None and sum(res.links.values()) == res.nbytes,
                      f"{tag}: links {res.links} vs {res.nbytes}")  # fmt: skip


@pytest.mark.parametrize("ppn", [1, 2, 4])
@pytest.mark.parametrize("spec", ["topk:ratio=0.1", "qsgd:levels=7"])
def test_compressed_leaders_equal_the_replay(spec: str, ppn: int) -> None:
    """Top-k and QSGD with error feedback at the leaders: three steps replayed exactly; the
    bytes per link class are the node reduce/broadcast and the leaders' allgather."""
    d, p, steps, me = 1031, COMM.size, 3, COMM.rank
    chosen = plan(spec, ef=True, method=f"hierarchical:ppn={ppn}")
    codec = chosen.codec(seed=SEED, rank=me // ppn if me % ppn == 0 else me)
    for step in range(steps):
        res = aggregate(COMM, grid(me, d, step), codec, chosen, step=step)
    tag = f"{spec} ppn={ppn} p={p}"
    want = replay(spec, p, ppn, d, steps, ef=True)
    assert_everywhere(COMM, np.array_equal(res.out, want), f"{tag}: != replay")
    groups = nodes(p, ppn)
    group = groups[me // ppn]
    leader = me == group[0]
    payload = get_encoder(spec).wire_bytes(d) if len(groups) > 1 else 0
    inter = (payload + 8) * (len(groups) - 1) if leader and len(groups) > 1 else 0
    assert_everywhere(COMM, res.links["inter"] == inter, f"{tag}: inter {res.links} != {inter}")
    holds_residual = getattr(codec, "residual", None) is not None
    assert_everywhere(COMM, holds_residual == (leader and len(groups) > 1),
                      f"{tag}: error feedback outside the leaders")  # fmt: skip


def test_adaptive_ranks_agree_on_the_level() -> None:
    """Each rank measures a different compute time; all take the most compressed proposal,
    and the 8-byte agreement is counted."""
    d, me, p = 4096, COMM.rank, COMM.size
    chosen = plan("adaptive:levels=0.5/0.1/0.01", ef=True, method="allgather")
    codec = chosen.codec(seed=SEED, rank=me)
    adaptive = adaptive_of(codec)
    assert adaptive is not None
    compute = 0.0
    levels = []
    for step in range(6):
        compute += 1.0 if me == p - 1 else 1e-9  # the last rank computes a lot
        res = aggregate(COMM, grid(me, d, step), codec, chosen, step=step, compute_s=compute)
        levels.append(adaptive.level)
    every = COMM.allgather(levels)
    assert_everywhere(COMM, all(lv == every[0] for lv in every), f"levels differ: {every}")
    payload = adaptive.encoders[adaptive.level].wire_bytes(d)
    want = (payload + 8) * (p - 1) + (8 if p > 1 else 0)
    assert_everywhere(COMM, res.nbytes == want, f"bytes {res.nbytes} != {want}")
    if p > 1:  # ranks with next to no compute push the level to the most compressed
        assert_everywhere(COMM, levels[-1] == 2, f"levels {levels}")
    assert_everywhere(COMM, [s for s, _, _ in adaptive.history] == list(range(6)), "history")

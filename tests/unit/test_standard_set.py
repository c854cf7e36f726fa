"""The standard benchmark set in process: registries per operation, layouts, cost forms,
buffer sets, thread level, distinct send and receive buffers, analysis of the new kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from analysis_synth import SIZES, timed, write_log
from mpi4py import MPI

from hpcopt.analysis.compare import compare_logs
from hpcopt.analysis.fits import fit_log
from hpcopt.analysis.model import forms, lower_bound
from hpcopt.analysis.plots import plot_log
from hpcopt.backend import get_backend
from hpcopt.bench.buffers import AUTO, buffer_sets, last_level_cache, parse_buffers
from hpcopt.bench.wire import transmitted
from hpcopt.collectives import COLLECTIVES, get_algorithm, parse_algorithms
from hpcopt.collectives.operations import OPERATIONS
from hpcopt.errors import UsageError
from hpcopt.importers.common import BUS_FACTORS
from hpcopt.kernels import KERNELS, thread_level_from
from hpcopt.kernels.collective import CollectiveCase
from hpcopt.kernels.p2p import PATTERNS, PatternCase
from hpcopt.log import read_log
from hpcopt.record import variant

CPU = get_backend("cpu")


@pytest.mark.parametrize("name", list(COLLECTIVES))
def test_every_operation_has_mpis_own_call_and_nccl_factors(name: str) -> None:
    owner = COLLECTIVES[name]
    assert "native" in owner.names()
    assert ("native-oop" in owner.names()) == (owner.operation.in_place != "none")
    for p in (2, 3, 8):
        assert owner.bus_factor(p) == pytest.approx(BUS_FACTORS[name](p) if name in BUS_FACTORS
                                                    else 1.0)  # fmt: skip


@pytest.mark.parametrize("name", list(COLLECTIVES))
def test_every_algorithm_brings_a_cost_form_that_the_model_knows(name: str) -> None:
    owner, known = COLLECTIVES[name], forms()
    for algo in owner.names():
        cost = owner[algo].info["cost"]
        assert known[cost.name] is cost, f"{name} {algo}"
        a, b, c = cost.coefficients(4, 1 << 20)
        assert min(a, b, c) >= 0


def test_the_own_algorithms_the_issue_names_are_registered() -> None:
    own = {name: [a for a in o.names() if not a.startswith("native")] for name, o in
           COLLECTIVES.items()}  # fmt: skip
    assert own["allgather"] == ["ring", "recursive-doubling", "bruck"]
    assert own["reduce_scatter"] == ["ring", "recursive-halving", "pairwise"]
    assert own["bcast"] == ["binomial", "scatter-allgather"]
    assert own["alltoall"] == ["bruck", "pairwise"]


def test_nccl_sizes_follow_osu_per_rank_messages() -> None:
    """algbw's size is nccl-tests' whole buffer; size_bytes stays OSU's per-rank message."""
    p = 4
    assert OPERATIONS["allgather"].algbw_bytes(1000, p) == 4000
    assert OPERATIONS["alltoall"].algbw_bytes(1000, p) == 4000
    assert OPERATIONS["reduce_scatter"].algbw_bytes(1000, p) == 1000
    assert OPERATIONS["reduce_scatter"].block_items(4096, 4, p) == 256
    assert OPERATIONS["bcast"].algbw_bytes(1000, p) == 1000


@pytest.mark.parametrize("name", list(COLLECTIVES))
def test_layouts_agree_with_the_c_core_table(name: str) -> None:
    """Python's buffers per form hold at least what the C core's table asks for."""
    from hpcopt import timer

    if not timer.status().available:
        pytest.skip(timer.status().reason)
    spec, info, p = OPERATIONS[name], timer.operation(OPERATIONS[name].c_name), 5
    sizes = {1: 1, 2: p}
    for rank in (0, 3):
        oop = spec.layout("out-of-place", rank, 0, p)
        assert oop.send == (sizes.get(info.send & 7, 0) if not info.send & 8 or rank == 0 else 0)
        assert oop.recv == (sizes.get(info.recv & 7, 0) if not info.recv & 8 or rank == 0 else 0)


def test_natives_only_for_other_modes() -> None:
    owner = COLLECTIVES["allgather"]
    assert [a.label for a in parse_algorithms("all", owner, natives_only=True)] == [
        "native", "native-oop"]  # fmt: skip
    with pytest.raises(UsageError, match="no such mode"):
        parse_algorithms("native,ring", owner, natives_only=True)
    with pytest.raises(UsageError, match="unknown bcast algorithm 'native-oop'"):
        get_algorithm("native-oop", COLLECTIVES["bcast"])


def test_lower_bounds_per_operation() -> None:
    assert lower_bound(4, 1000, 1.0, 1.0) == pytest.approx(2 + 1500)  # allreduce, as before
    assert lower_bound(4, 1000, 1.0, 1.0, kernel="allgather") == pytest.approx(2 + 3000)
    assert lower_bound(1, 1000, 1.0, 1.0, kernel="bcast") == 0.0


@pytest.mark.parametrize("text,expected", [("1", 1), ("16", 16), ("auto", AUTO)])
def test_parse_buffers(text: str, expected: int) -> None:
    assert parse_buffers(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "x", ""])
def test_parse_buffers_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--buffers"):
        parse_buffers(text)


def test_buffer_sets_exceed_twice_the_cache_but_never_the_calls() -> None:
    llc = last_level_cache()
    assert llc >= 1 << 20
    assert buffer_sets(AUTO, llc, 1000) == 2
    assert buffer_sets(AUTO, 8, 110) == 110  # one set per call: each call on its own buffers
    assert buffer_sets(AUTO, 4 * llc, 10) == 1
    assert buffer_sets(16, 8, 5) == 5 and buffer_sets(3, 8, 100) == 3


@pytest.mark.parametrize(
    "argv,level",
    [(["--thread-level", "single"], "single"), (["-n", "3", "--thread-level=funneled"],
     "funneled"), (["--thread-level", "bogus"], None), ([], None)],
)  # fmt: skip
def test_thread_level_is_read_before_mpi(argv: list[str], level: str | None) -> None:
    assert thread_level_from(argv) == level


def test_every_kernel_has_a_launcher() -> None:
    root = Path(__file__).resolve().parents[2]
    assert all((root / "kernels" / f"{name}.py").is_file() for name in KERNELS)


@pytest.mark.parametrize("name", list(COLLECTIVES))
def test_collective_buffers_never_share_send_and_receive(name: str) -> None:
    owner = COLLECTIVES[name]
    for algo in owner.names():
        case = CollectiveCase(MPI.COMM_SELF, owner, get_algorithm(algo, owner), "float64", CPU)
        prepared = case.prepare(64 * case.itemsize if name != "barrier" else 0)
        prepared.plan_calls(10, 3)
        arrays = [a for s in prepared.sets for a in (s.send, s.recv) if a is not None]
        for i, a in enumerate(arrays):
            assert not any(np.shares_memory(a, b) for b in arrays[i + 1 :]), f"{name} {algo}"


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_pattern_sends_and_receives_through_distinct_buffers(pattern: str) -> None:
    """Fails on a ping-pong that sends from and receives into one array."""
    prepared = PatternCase(MPI.COMM_SELF, CPU, PATTERNS[pattern], 4).prepare(4096)
    prepared.plan_calls(10, 2)
    arrays = [a for s in prepared.sets for a in (s.send, s.recv)]
    assert len(arrays) == 4
    for i, a in enumerate(arrays):
        assert not any(np.shares_memory(a, b) for b in arrays[i + 1 :])
    call = prepared.c_call()
    assert call is not None and not any(
        np.shares_memory(s, r) for s in call.send for r in call.recv
    )


def test_interface_counters_are_read_from_this_namespace() -> None:
    sent = transmitted("lo")
    assert sent is None or sent >= 0
    assert transmitted("no-such-interface-here") is None


def test_variant_tells_modes_and_topologies_apart() -> None:
    assert variant({"mode": "blocking"}) == "" and variant({}) == ""
    assert variant({"mode": "nonblocking"}) == "nonblocking"
    assert variant({"topology": "torus", "mode": "blocking"}) == "torus"


def _new_kernels_log(path: Path) -> Path:
    """allgather (ring, native), nonblocking allreduce and a neighbour exchange, 2 ranks."""
    records = []
    for n in SIZES[:8]:
        for algo, scale in (("ring", 1.0), ("native", 0.8)):
            records.append(timed("allgather", algo, 2, n, 2e-6 * scale + n * 2e-10))
        fields, arrays = timed("allreduce", "native", 2, n, 3e-6 + n * 1e-10)
        fields.update(mode="nonblocking", t_pure_s=2e-6, t_compute_s=2e-6, overlap_pct=50.0)
        records.append((fields, arrays))
        for topology in ("ring", "torus"):
            fields, arrays = timed("neighbor", "p2p", 2, n, 4e-6 + n * 3e-10)
            fields.update(topology=topology, degree=1)
            records.append((fields, arrays))
    return write_log(path, [({"tag": "x", "ranks": 2, "kernel": "mixed"}, records)])


def test_fit_compare_and_plots_cover_the_new_kernels(tmp_path: Path) -> None:
    log = read_log(_new_kernels_log(tmp_path / "n.h5"))
    names = {f.name for f in fit_log(log).algorithms}
    assert {"x/allgather:ring", "x/allgather:native", "x/native (nonblocking)"} <= names
    assert {"x/neighbor:p2p (ring)", "x/neighbor:p2p (torus)"} <= names
    ring = next(f for f in fit_log(log).algorithms if f.name == "x/allgather:ring")
    assert ring.form == "allgather-ring"
    rows = compare_logs([log, log])
    kinds = {(r["kernel"], r["variant"]) for r in rows}
    assert {("neighbor", "torus"), ("allreduce", "nonblocking")} <= kinds
    paths = {p.stem for p in plot_log(log, tmp_path / "fig")}
    assert {"allgather_time", "allgather_busbw", "allreduce_overlap", "neighbor_time"} <= paths


def test_overlap_is_osus_formula_within_0_and_100_percent() -> None:
    from hpcopt.timer import overlap_percent

    def pct(pure: float, total: float, compute: float) -> float:
        return overlap_percent(np.array([pure]), np.array([total]), np.array([compute]))

    assert pct(10.0, 15.0, 10.0) == pytest.approx(50.0)  # half the call showed
    assert pct(10.0, 25.0, 10.0) == 0.0  # slower than call + compute: none hidden
    assert pct(10.0, 8.0, 10.0) == 100.0  # a noisy compute phase outlasted the total
    assert pct(0.0, 1.0, 1.0) == 0.0

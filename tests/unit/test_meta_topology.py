"""Run metadata on emulated topologies: HPCOPT_TOPOLOGY and the shared-memory node map."""

from __future__ import annotations

import pytest
from mpi4py import MPI

from hpcopt.meta import TOPOLOGY_ENV, collect_meta, shared_memory_node, topology


def test_topology_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOPOLOGY_ENV, raising=False)
    assert topology() is None
    monkeypatch.setenv(TOPOLOGY_ENV, '{"kind": "two-level", "nodes": [{"ranks": [0, 1]}]}')
    assert topology() == {"kind": "two-level", "nodes": [{"ranks": [0, 1]}]}
    monkeypatch.setenv(TOPOLOGY_ENV, "not json")
    assert topology() == {"unparsed": "not json"}


def test_meta_records_topology_and_shared_memory_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOPOLOGY_ENV, '{"kind": "uneven"}')
    meta = collect_meta(MPI.COMM_SELF, kernel="k", tag="t", device="cpu", cuda_aware=False)
    assert meta["topology"] == {"kind": "uneven"} and meta["shared_memory_nodes"] == [0]
    assert meta["nodes"] == 1 and shared_memory_node(MPI.COMM_SELF) == 0

"""Optimizers: gossip matrices, the registry and validation of settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.optim import Config, available, check, mixing_matrix
from hpcopt.optim.run import lower_bound_bits
from hpcopt.optim.topology import TOPOLOGIES, neighbors


@pytest.mark.parametrize("name", TOPOLOGIES)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 12])
def test_mixing_matrices_are_symmetric_and_doubly_stochastic(name: str, p: int) -> None:
    if name == "hypercube" and p & (p - 1):
        with pytest.raises(UsageError, match="power-of-two"):
            mixing_matrix(name, p)
        return
    w = mixing_matrix(name, p)
    assert np.allclose(w, w.T) and (w >= 0).all()
    assert np.allclose(w.sum(axis=0), 1) and np.allclose(w.sum(axis=1), 1)
    for i in range(p):
        assert all(i in neighbors(name, j, p) for j in neighbors(name, i, p))
    if p > 1:  # connected: the second largest eigenvalue modulus is below 1
        assert sorted(abs(np.linalg.eigvalsh(w)))[-2] < 1 - 1e-9


def test_complete_graph_weights_are_uniform() -> None:
    assert np.allclose(mixing_matrix("complete", 5), 1 / 5)


def test_lower_bound_uses_unit_constants() -> None:
    assert lower_bound_bits(1024, 1e-3) == pytest.approx(1024 * (10 + math.log2(1000)))


BAD_CONFIGS = [
    ("nope", {}, "unknown optimizer"),
    ("dsgd:topology=star", {}, "topology='star' is not one of ring"),
    ("dsgd:exchange=smoke", {}, "exchange='smoke' is not one of"),
    ("choco", {"ef": True}, "no error feedback"),
    ("choco", {"encoder": "powersgd"}, "cannot be gossiped"),
    ("dsgd", {"method": "allgather"}, "gossips payloads"),
    ("dsgd:topology=hypercube", {}, "power-of-two"),
    ("sync:topology=ring", {}, "unknown option 'topology'"),
    ("sync", {"encoder": "topk", "method": "summable"}, "not summable"),
    ("sync", {"encoder": "topk", "method": "vote"}, "vote needs the sign"),
    ("sync", {"encoder": "powersgd", "method": "allgather"}, "powersgd"),
    ("sync", {"method": "powersgd"}, "needs the powersgd encoder"),
    ("sync", {"encoder": "sign", "ef": True, "method": "two-phase"}, "two-phase"),
    ("sync", {"encoder": "bf16", "allreduce": "ring"}, "native algorithm"),
    ("sync", {"allreduce": "warp"}, "unknown algorithm"),
    ("local:participation=0", {}, "participation='0' is not a number in"),
    ("local:steps=1.5", {}, "steps='1.5' is not an integer"),
    ("easgd:alpha=1.5", {}, "alpha='1.5' is not a number in"),
    ("sync", {"lr": -1.0}, "--lr must be > 0"),
]


@pytest.mark.parametrize("spec,knobs,message", BAD_CONFIGS)
def test_bad_configurations_are_usage_errors(spec: str, knobs: dict, message: str) -> None:
    settings = {"lr": 0.1, **knobs}
    with pytest.raises(UsageError, match=message):
        check(spec, Config(**settings), 3)


def test_powersgd_with_error_feedback_is_allowed() -> None:
    check("sync", Config(lr=0.1, encoder="powersgd", ef=True), 2)


def test_registry_lists_every_algorithm() -> None:
    assert available() == ["sync", "local", "dsgd", "choco", "easgd"]



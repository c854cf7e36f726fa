"""Optimizers: gossip matrices, the registry and validation of settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcopt.errors import UsageError
from hpcopt.optim import Config, available, check, get_optimizer, mixing_matrix
from hpcopt.optim.run import diagnose, lower_bound_bits, survey_bound_bits, train
from hpcopt.optim.schedule import SCHEDULES, Schedule
from hpcopt.optim.topology import TOPOLOGIES, neighbors
from hpcopt.problems import get_problem


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
    assert survey_bound_bits(4, 1024, 1e-3) == pytest.approx(3 * 1024 * math.log2(1000))


@pytest.mark.parametrize("eps", [1.0, 5.0, math.inf])
def test_bounds_at_eps_of_one_or_more_have_no_log_term(eps: float) -> None:
    assert lower_bound_bits(1024, eps) == 1024 * 10
    assert survey_bound_bits(4, 1024, eps) == 0


def test_schedules_at_known_points() -> None:
    h = 100
    assert Schedule("constant", horizon=h)(57) == 1
    assert Schedule("inv:t0=10", horizon=h)(30) == pytest.approx(1 / 4)
    assert Schedule("invsqrt:t0=10", horizon=h)(30) == pytest.approx(1 / 2)
    step = Schedule("step:factor=0.5,every=10", horizon=h)
    assert [step(t) for t in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]
    assert Schedule("step", horizon=h)(25) == 0.5  # every = horizon / 4
    cos = Schedule("cosine:floor=0.1", horizon=h)
    assert cos(0) == 1 and cos(50) == pytest.approx(0.55) and cos(100) == pytest.approx(0.1)
    warm = Schedule("cosine", warmup=4, horizon=104)
    assert [warm(t) for t in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warm(54) == pytest.approx(0.5)  # the decay starts after the warm-up


# Each decaying schedule, with options that suit a 2000-step budget.
DECAYING = ("inv", "invsqrt:t0=10", "step:factor=0.2", "cosine")


def test_every_schedule_reaches_eps_where_constant_steps_stall() -> None:
    """Minibatch SGD: a constant step stalls at its noise floor; decaying steps go on."""
    from mpi4py import MPI

    assert {s.split(":")[0] for s in DECAYING} == set(SCHEDULES.names()) - {"constant"}
    spec = "lstsq:d=20,n=200,nnz=4,lowrank=2,lam=1e-1,noise=0.5"
    problem = get_problem(spec, rank=0, size=1, seed=3)
    f_star, lr = problem.reference().f_star, 0.5 * problem.default_lr()
    for name in ("constant", *DECAYING):
        cfg = Config(lr=lr, batch=4, seed=3, schedule=name, horizon=2000)
        opt = get_optimizer("sync", MPI.COMM_SELF, problem, cfg)
        fields, _ = train(opt, eps=2e-3, max_iters=2000, f_star=f_star, eval_every=10)
        if name == "constant":
            assert not fields["reached"] and fields["outcome"] == "plateau"
            assert fields["final_subopt"] > 5 * 2e-3, fields["outcome_note"]
        else:
            assert fields["reached"], (name, fields["outcome_note"])


def test_diagnose_names_the_reason() -> None:
    it = np.arange(0, 1001, 10)
    flat = np.maximum(np.exp(-it / 50.0), 1e-3)
    outcome, note = diagnose(it, flat)
    assert outcome == "plateau" and note.startswith("plateau at f − f* = 0.001 since iteration")
    assert 340 <= int(note.rsplit(" ", 1)[1]) <= 360
    outcome, note = diagnose(it, np.exp(-it / 1000.0))
    assert outcome == "budget" and "still decreasing" in note
    assert diagnose(it, np.exp(it / 100.0))[0] == "diverged"
    assert diagnose(it[:3], np.array([1.0, 0.5, np.nan]))[1] == (
        "diverged: f − f* became nan at iteration 20"
    )


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
    ("lag", {"encoder": "powersgd"}, "cannot be sent to a root"),
    ("lag", {"ef": True}, "--ef does not apply"),
    ("lag", {"batch": 4}, "--batch must be 0"),
    ("lag", {"method": "allgather"}, "aggregates at a root"),
    ("lag:xi=-1", {}, "xi='-1' is not a number >= 0"),
    ("lag-ps:history=0", {}, "history='0' is not a positive integer"),
    ("async", {"encoder": "topk"}, "--encoder, --ef and --method do not apply"),
    ("async:servers=3", {}, "4 ranks or more, not 3"),
    ("async:staleness=-2", {}, "an integer >= 0 or none"),
    ("async", {"slow_rank": 0, "slowdown": 2.0}, "ranks below 1 serve"),
    ("sync", {"bucket": 2}, "at least one 4-byte element"),
    ("local", {"bucket": 1024}, "--bucket needs --algo sync"),
    ("sync", {"bucket": 1024, "encoder": "topk"}, "encoders none, fp16, powersgd"),
    ("sync:deadline=1", {"bucket": 1024}, "no deadline"),
    ("sync", {"bucket": 1024, "allreduce": "ring"}, "--allreduce do not apply"),
    ("sync:deadline=0.1", {"method": "allgather"}, "aggregates at a root"),
    ("local:deadline=0.1", {"encoder": "powersgd"}, "cannot be sent to a root"),
    ("sync", {"schedule": "cosine:floor=2"}, "floor='2' is not a number in"),
    ("sync", {"schedule": "linear"}, "unknown schedule 'linear'"),
    ("sync", {"warmup": -1}, "--warmup-iters must be >= 0"),
]


@pytest.mark.parametrize("spec,knobs,message", BAD_CONFIGS)
def test_bad_configurations_are_usage_errors(spec: str, knobs: dict, message: str) -> None:
    settings = {"lr": 0.1, **knobs}
    with pytest.raises(UsageError, match=message):
        check(spec, Config(**settings), 3)


def test_powersgd_with_error_feedback_is_allowed() -> None:
    check("sync", Config(lr=0.1, encoder="powersgd", ef=True), 2)


def test_async_on_one_rank_is_refused() -> None:
    with pytest.raises(UsageError, match="2 ranks or more, not 1"):
        check("async", Config(lr=0.1), 1)


def test_problem_checks_refuse_what_the_problem_cannot_do() -> None:
    from mpi4py import MPI

    mlp = get_problem("mlp:n=64", rank=0, size=1)
    with pytest.raises(UsageError, match="lag-ps needs each shard's smoothness"):
        get_optimizer("lag-ps", MPI.COMM_SELF, mlp, Config(lr=0.1))
    lstsq = get_problem("lstsq:n=64", rank=0, size=1)
    with pytest.raises(UsageError, match="gradient comes layer by layer"):
        get_optimizer("sync", MPI.COMM_SELF, lstsq, Config(lr=0.1, bucket=1024))


def test_registry_lists_every_algorithm() -> None:
    assert available() == ["sync", "local", "dsgd", "choco", "easgd", "lag", "lag-ps", "async"]

"""The optimizers at several rank counts: convergence, equivalences, byte counts.

Run by tests/e2e/test_mpi_modules.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.collectives import get_algorithm
from hpcopt.encoders import get_encoder
from hpcopt.encoders.powersgd import matrix_shape
from hpcopt.optim import Config, Optimizer, get_optimizer
from hpcopt.optim.run import train
from hpcopt.optim.topology import neighbors
from hpcopt.problems import Problem, get_problem

pytestmark = pytest.mark.mpi
SPEC = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"
EPS = 1e-3
SEED = 3
COMM = MPI.COMM_WORLD
RUNS = {
    "sync": ("sync", {}),
    "sync-topk-ef": ("sync", {"encoder": "topk:ratio=0.2", "ef": True}),
    "sync-powersgd-ef": ("sync", {"encoder": "powersgd:r=1", "ef": True}),
    "local": ("local:steps=4,participation=0.6,stragglers=0.5", {}),
    "dsgd": ("dsgd:topology=ring", {}),
    "dsgd-neighbor": ("dsgd:topology=exponential,exchange=neighbor", {}),
    "choco": ("choco:topology=ring,gamma=0.5", {"encoder": "topk:ratio=0.3"}),
    "easgd": ("easgd:tau=2,alpha=0.2", {}),
}


def problem(rank: int | None = None) -> Problem:
    """This rank's shard (or rank ``rank``'s) of the test problem."""
    return get_problem(SPEC, rank=COMM.rank if rank is None else rank, size=COMM.size, seed=SEED)


def make(algo: str, lr: float, **knobs: Any) -> Optimizer:
    """An optimizer on the test problem."""
    return get_optimizer(algo, COMM, problem(), Config(lr=lr, seed=SEED, **knobs))


@pytest.fixture(scope="module")
def lr() -> float:
    mine = problem()
    mine.reference(COMM)
    return mine.default_lr()


@pytest.fixture(scope="module")
def f_star() -> float:
    star = problem().reference(COMM).f_star
    assert star is not None
    return star


@pytest.mark.parametrize("label", RUNS)
def test_every_algorithm_reaches_eps(label: str, lr: float, f_star: float) -> None:
    """f(x̄) − f* ≤ ε, with cumulative bits."""
    spec, knobs = RUNS[label]
    fields, arrays = train(make(spec, lr, **knobs), eps=EPS, max_iters=3000, f_star=f_star)
    what = f"{label} reached eps (final {fields['final_subopt']:.3g})"
    assert_everywhere(COMM, fields["reached"], what)
    assert_everywhere(COMM, bool(np.all(np.diff(arrays["bits"]) >= 0)), f"{label} bits")


def test_sync_is_serial_gd(lr: float) -> None:
    """sync + none, full batch, equals GD on the union; minibatch equals a serial replay."""
    opt, steps, mine = make("sync", lr), 15, problem()
    x = mine.init_point()
    for it in range(steps):
        opt.step(it)
        x = x - lr * mine.full_grad(x)
    assert_everywhere(
        COMM, np.allclose(opt.x, x, rtol=1e-5, atol=1e-6), "sync full batch == serial GD"
    )
    opt = make("sync", lr, batch=4)
    shards = [problem(r) for r in range(COMM.size)]
    rngs = [np.random.default_rng(np.random.SeedSequence([SEED, 0x0B7, r]))
            for r in range(COMM.size)]  # fmt: skip
    x = mine.init_point()
    for it in range(steps):
        opt.step(it)
        grads = [s.grad_local(x, s.sample_batch(g, 4)) for s, g in zip(shards, rngs, strict=True)]
        x = x - lr * np.mean([gr.astype(np.float32) for gr in grads], axis=0)
    assert_everywhere(
        COMM, np.allclose(opt.x, x, rtol=1e-5, atol=1e-6), "sync minibatch == serial SGD replay"
    )


def test_dsgd_complete_is_sync(lr: float) -> None:
    """DSGD on the complete graph takes the same steps as sync."""
    a, b = make("sync", lr, batch=4), make("dsgd:topology=complete", lr, batch=4)
    for it in range(15):
        a.step(it)
        b.step(it)
    assert_everywhere(COMM, np.allclose(a.x, b.x, rtol=1e-5, atol=1e-6), "dsgd complete == sync")


def test_bytes_match_collectives(lr: float) -> None:
    """Ledger bytes equal what the collectives and wire formats say for the same messages."""
    p, steps = COMM.size, 3
    d = problem().dim
    ring = get_algorithm("ring").run(COMM, np.zeros(d, dtype=np.float32))
    expect = {
        ("sync", "none", "ring"): ring,
        ("sync", "topk:ratio=0.2", "native"): (get_encoder("topk:ratio=0.2").wire_bytes(d) + 8)
        * (p - 1),
        ("sync", "powersgd:r=1", "native"): 4 * sum(matrix_shape((d,))) if p > 1 else 0,
        ("dsgd", "none", "native"): 4 * d * len(neighbors("ring", COMM.rank, p)),
        ("choco", "topk:ratio=0.3", "native"): get_encoder("topk:ratio=0.3").wire_bytes(d)
        * len(neighbors("ring", COMM.rank, p)),
    }
    for (algo, enc, allreduce), per_step in expect.items():
        spec = algo if algo == "sync" else f"{algo}:topology=ring"
        opt = make(spec, lr, encoder=enc, allreduce=allreduce)
        for it in range(steps):
            opt.step(it)
        assert_everywhere(
            COMM, opt.ledger.bytes == steps * per_step, f"{algo} {enc}: {opt.ledger.bytes} bytes"
        )


def test_local_stays_replicated(lr: float) -> None:
    """FedAvg with partial participation keeps one model on every rank."""
    opt = make("local:steps=3,participation=0.5,stragglers=0.5", lr)
    for it in range(6):
        opt.step(it)
    models = COMM.allgather(opt.x)
    assert_everywhere(COMM, all(np.array_equal(m, models[0]) for m in models), "local replicated")

"""Multi-rank checks of the optimizers: convergence, equivalences, byte counts.

Run as ``mpiexec -n N python tests/mpi_optim.py``; prints from rank 0 only and exits
nonzero when any check fails on any rank.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.collectives import get_algorithm
from hpcopt.encoders import get_encoder
from hpcopt.encoders.powersgd import matrix_shape
from hpcopt.optim import Config, Optimizer, get_optimizer
from hpcopt.optim.run import train
from hpcopt.optim.topology import neighbors
from hpcopt.problems import Problem, get_problem

SPEC = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"
EPS = 1e-3
SEED = 3
COMM = MPI.COMM_WORLD
RUNS = {
    "sync": ({}, {}),
    "sync-topk-ef": ({"encoder": "topk:ratio=0.2", "ef": True}, {}),
    "sync-powersgd-ef": ({"encoder": "powersgd:r=1", "ef": True}, {}),
    "local": ({"local_steps": 4, "participation": 0.6, "stragglers": 0.5}, {}),
    "dsgd": ({"topology": "ring"}, {}),
    "dsgd-neighbor": ({"topology": "exponential", "exchange": "neighbor"}, {}),
    "choco": ({"topology": "ring", "encoder": "topk:ratio=0.3", "gamma": 0.5}, {}),
    "easgd": ({"tau": 2, "alpha": 0.2}, {}),
}
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    """Record a failed check."""
    if not ok:
        failures.append(what)


def problem(rank: int | None = None) -> Problem:
    """This rank's shard (or rank ``rank``'s) of the test problem."""
    return get_problem(SPEC, rank=COMM.rank if rank is None else rank, size=COMM.size, seed=SEED)


def make(algo: str, lr: float, **knobs: Any) -> Optimizer:
    """An optimizer on the test problem."""
    return get_optimizer(algo, COMM, problem(), Config(lr=lr, seed=SEED, **knobs))


def reaches_eps(lr: float, f_star: float) -> None:
    """Every algorithm gets f(x̄) − f* ≤ ε."""
    for label, (knobs, _) in RUNS.items():
        opt = make(label.split("-")[0], lr, **knobs)
        fields, arrays = train(opt, eps=EPS, max_iters=3000, f_star=f_star)
        check(fields["reached"], f"{label} reached eps (final {fields['final_subopt']:.3g})")
        check(bool(np.all(np.diff(arrays["bits"]) >= 0)), f"{label} bits are cumulative")


def sync_is_serial_gd(lr: float) -> None:
    """sync + none, full batch, equals GD on the union; minibatch equals a serial replay."""
    opt, steps, mine = make("sync", lr), 15, problem()
    x = mine.init_point()
    for it in range(steps):
        opt.step(it)
        x = x - lr * mine.full_grad(x)
    check(np.allclose(opt.x, x, rtol=1e-5, atol=1e-6), "sync full batch == serial GD")
    opt = make("sync", lr, batch=4)
    shards = [problem(r) for r in range(COMM.size)]
    rngs = [np.random.default_rng(np.random.SeedSequence([SEED, 0x0B7, r]))
            for r in range(COMM.size)]  # fmt: skip
    x = mine.init_point()
    for it in range(steps):
        opt.step(it)
        grads = [s.grad_local(x, s.sample_batch(g, 4)) for s, g in zip(shards, rngs, strict=True)]
        x = x - lr * np.mean([gr.astype(np.float32) for gr in grads], axis=0)
    check(np.allclose(opt.x, x, rtol=1e-5, atol=1e-6), "sync minibatch == serial SGD replay")


def dsgd_complete_is_sync(lr: float) -> None:
    """DSGD on the complete graph takes the same steps as sync."""
    a, b = make("sync", lr, batch=4), make("dsgd", lr, batch=4, topology="complete")
    for it in range(15):
        a.step(it)
        b.step(it)
    check(np.allclose(a.x, b.x, rtol=1e-5, atol=1e-6), "dsgd complete == sync")


def bytes_match_collectives(lr: float) -> None:
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
        topo = "ring" if algo != "sync" else None
        opt = make(algo, lr, encoder=enc, allreduce=allreduce, topology=topo)
        for it in range(steps):
            opt.step(it)
        check(opt.ledger.bytes == steps * per_step, f"{algo} {enc}: {opt.ledger.bytes} bytes")


def local_stays_replicated(lr: float) -> None:
    """FedAvg with partial participation keeps one model on every rank."""
    opt = make("local", lr, local_steps=3, participation=0.5, stragglers=0.5)
    for it in range(6):
        opt.step(it)
    models = COMM.allgather(opt.x)
    check(all(np.array_equal(m, models[0]) for m in models), "local replicated")


def main() -> int:
    mine = problem()
    ref = mine.reference(COMM)
    lr = mine.default_lr()
    for test in (sync_is_serial_gd, dsgd_complete_is_sync, bytes_match_collectives,
                 local_stays_replicated):  # fmt: skip
        test(lr)
    reaches_eps(lr, ref.f_star)
    everyone = [f for rank_failures in COMM.allgather(failures) for f in rank_failures]
    if COMM.rank == 0:
        print("\n".join(sorted(set(everyone))) or f"all optimizer checks passed on {COMM.size}")
    return 1 if everyone else 0


if __name__ == "__main__":
    sys.exit(main())

"""Communicating less often and hiding what remains, at several rank counts: LAG, round
deadlines, asynchronous SGD over one-sided MPI, bucketed overlap.

Run by tests/e2e/test_mpi_modules.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mpi4py import MPI
from spmd import assert_everywhere

from hpcopt.errors import UsageError
from hpcopt.optim import Config, Optimizer, get_optimizer
from hpcopt.optim.run import train
from hpcopt.problems import Problem, get_problem

pytestmark = pytest.mark.mpi
COMM = MPI.COMM_WORLD
P = COMM.size
SEED = 3
HETERO = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2,hetero=1"
MLP = "mlp:d=6,hidden=8,classes=3,n=240,layers=2"


def problem(spec: str = HETERO, rank: int | None = None, size: int = P) -> Problem:
    return get_problem(spec, rank=COMM.rank if rank is None else rank, size=size, seed=SEED)


def lr_of(spec: str = HETERO) -> float:
    mine = problem(spec)
    mine.reference(COMM)
    return mine.default_lr()


def make(algo: str, spec: str = HETERO, comm: Any = COMM, **knobs: Any) -> Optimizer:
    cfg = Config(lr=knobs.pop("lr", None) or lr_of(spec), seed=SEED, **knobs)
    return get_optimizer(algo, comm, problem(spec), cfg)


def serial_gd(steps: int, lr: float, ranks: list[int]) -> np.ndarray:
    """x ← x − (lr/k)·Σ_m float32(∇f_m(x)) over ``ranks`` in rank order, summed in float32."""
    shards = [problem(rank=r) for r in ranks]
    x = shards[0].init_point()
    for _ in range(steps):
        total = shards[0].grad_local(x).astype(np.float32)
        for shard in shards[1:]:
            total += shard.grad_local(x).astype(np.float32)
        x -= (lr / len(ranks)) * total
    return x


class CountingComm:
    """A communicator that records the buffers handed to MPI's sending calls."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.sent: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.comm, name)

    @staticmethod
    def _nbytes(buf: Any) -> int:
        return int(np.asarray(buf[0] if isinstance(buf, list) else buf).nbytes)

    def Send(self, buf: Any, dest: int, tag: int = 0) -> None:
        self.sent.append(("Send", self._nbytes(buf)))
        self.comm.Send(buf, dest, tag)

    def Allgather(self, send: Any, recv: Any) -> None:
        self.sent.append(("Allgather", self._nbytes(send)))
        self.comm.Allgather(send, recv)

    def Bcast(self, buf: Any, root: int = 0) -> None:
        if self.comm.rank == root:
            self.sent.append(("Bcast", self._nbytes(buf)))
        self.comm.Bcast(buf, root)


@pytest.mark.parametrize("algo", ["lag:xi=0", "lag-ps:xi=0"])
def test_lag_with_zero_threshold_is_gradient_descent(algo: str) -> None:
    """Every rank uploads every round: the steps of GD, bit for bit."""
    lr, steps = lr_of(), 12
    opt = make(algo)
    for it in range(steps):
        opt.step(it)
    same = np.array_equal(opt.x, serial_gd(steps, lr, list(range(P))))
    assert_everywhere(COMM, same, f"{algo} == serial GD")
    assert_everywhere(COMM, opt.uploads == steps, f"{algo} uploaded every round")


@pytest.mark.parametrize("algo", ["lag", "lag-ps"])
def test_lag_counts_the_bytes_it_hands_to_mpi_and_skipped_uploads_send_nothing(
    algo: str,
) -> None:
    counting = CountingComm(COMM)
    opt = make(algo, comm=counting)
    skipped = 0
    for it in range(40):
        before = len(counting.sent)
        opt.step(it)
        sends = [n for kind, n in counting.sent[before:] if kind == "Send"]
        uploaded = bool(opt.agg.senders[COMM.rank])
        skipped += not uploaded
        expect = [4 * opt.x.size] if uploaded and COMM.rank != 0 else []
        assert_everywhere(COMM, sends == expect, f"{algo} step {it}: sends {sends}")
    factor = {"Send": 1, "Allgather": P - 1, "Bcast": P - 1}  # the documented attribution
    handed = sum(factor[kind] * n for kind, n in counting.sent)
    assert_everywhere(COMM, opt.ledger.bytes == handed, f"{algo}: {opt.ledger.bytes} != {handed}")
    if P > 1:  # heterogeneous shards: some uploads are skipped
        assert_everywhere(COMM, COMM.allreduce(skipped) > 0, f"{algo} skipped no upload")


def test_lag_reaches_eps_with_fewer_uploads_than_rounds() -> None:
    star = problem().reference(COMM).f_star
    opt = make("lag")
    fields, _ = train(opt, eps=1e-5, max_iters=2000, f_star=star, eval_every=5)
    uploads = opt.summary()[0]["uploads"]
    assert_everywhere(COMM, fields["reached"], f"lag reached eps ({fields['outcome_note']})")
    assert_everywhere(COMM, P == 1 or uploads < fields["iters"] * P, f"{uploads} uploads")


def test_sync_deadline_leaves_out_the_late_rank() -> None:
    """The emulated straggler misses every deadline: the others' mean gradient is used."""
    lr, steps, slow = lr_of(), 3, P - 1
    opt = make("sync:deadline=0.5", slow_rank=slow, slowdown=1e9)
    for it in range(steps):
        opt.step(it)
    late = opt.summary()[0]["late"]
    # nobody in time at one rank: no step
    expect = problem().init_point() if P == 1 else serial_gd(steps, lr, list(range(P - 1)))
    assert_everywhere(COMM, np.array_equal(opt.x, expect), "deadline: mean of the in-time ranks")
    assert_everywhere(COMM, late == steps, f"{late} late gradients")


def test_fedavg_deadline_counts_late_updates_and_stays_replicated() -> None:
    opt = make("local:steps=2,deadline=0.5", slow_rank=P - 1, slowdown=1e9)
    for it in range(2):
        opt.step(it)
    models = COMM.allgather(opt.x)
    assert_everywhere(COMM, opt.summary()[0]["late"] == 2, "one late update per round")
    same = all(np.array_equal(m, models[0]) for m in models)
    assert_everywhere(COMM, same and bool(np.all(np.isfinite(opt.x))), "one model")


def test_async_with_one_worker_is_serial_sgd() -> None:
    """Servers 0..p−2 hold slices of the model; worker p−1 alone: plain SGD, bit for bit."""
    if P == 1:
        with pytest.raises(UsageError, match="2 ranks or more"):
            make("async")
        return
    spec, updates, batch = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2", 25, 4
    data = get_problem(spec, rank=0, size=1, seed=SEED)
    data.reference(COMM)
    lr = 0.3 * data.default_lr()  # minibatches of 4: well below 1/L
    opt = get_optimizer(f"async:servers={P - 1}", COMM, data, Config(lr=lr, batch=batch, seed=SEED))
    fields, _ = train(opt, eps=1e-30, max_iters=updates, f_star=data.f_star, eval_every=5)
    rng = np.random.default_rng(np.random.SeedSequence([SEED, 0x0B7, P - 1]))
    x = data.init_point().astype(np.float32)
    for _ in range(updates):
        g = data.grad_local(x.astype(np.float64), data.sample_batch(rng, batch))
        x += (-lr * g).astype(np.float32)
    assert_everywhere(COMM, fields["iters"] == updates, f"{fields['iters']} updates")
    assert_everywhere(COMM, np.array_equal(opt.x, x.astype(np.float64)), "async == serial SGD")
    hist = opt.summary()[1]["staleness_hist"]
    assert_everywhere(COMM, list(hist) == [updates], f"one worker, staleness 0: {hist}")


@pytest.mark.parametrize("staleness", ["none", "1"])
def test_async_workers_count_every_update_and_keep_the_staleness_bound(staleness: str) -> None:
    """Unbounded: reach eps. Bounded by 1: no applied update staler than 1 (a budget of
    updates only, as with several workers on few cores most updates are dropped)."""
    if P < 3:
        pytest.skip("two workers or more")
    spec = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"
    data = get_problem(spec, rank=max(COMM.rank - 1, 0), size=P - 1, seed=SEED)
    star = data.reference(COMM).f_star
    opt = get_optimizer(
        f"async:staleness={staleness}", COMM, data, Config(lr=data.default_lr(), seed=SEED)
    )
    budget = 20000 if staleness == "none" else 100
    fields, _ = train(opt, eps=1e-4, max_iters=budget, f_star=star, eval_every=10)
    extra, arrays = opt.summary()
    applied, dropped, d = extra["applied_updates"], extra["dropped_updates"], data.dim
    if staleness == "none":
        assert_everywhere(COMM, fields["reached"], f"async reached eps ({fields['outcome_note']})")
    else:
        assert_everywhere(COMM, extra["staleness_max"] <= 1, "staleness bound held")
    assert_everywhere(COMM, int(arrays["staleness_hist"].sum()) == applied, "histogram total")
    total = COMM.allreduce(opt.ledger.bytes)
    least = (applied + dropped) * (48 + 4 * d) + applied * (8 + 4 * d) + 8 * dropped
    most = least + (P - 1) * (48 + 4 * d)  # each worker's last read or apply finds the stop
    assert_everywhere(COMM, least <= total <= most, f"bytes {total} not in [{least}, {most}]")


# Bucket caps and the buckets they make of MLP's tensors (bytes, last layer first:
# b2 12, W2 96, b1 32, W1 256, b0 32, W0 192): one per tensor, three, one.
CAPS = {4: 6, 128: 3, 1 << 20: 1}


@pytest.mark.parametrize("cap", CAPS)
def test_bucketed_overlap_gives_the_unbucketed_model_bit_for_bit(cap: int) -> None:
    lr = lr_of(MLP)
    plain = make("sync", MLP, lr=lr, batch=8)
    bucketed = make("sync", MLP, lr=lr, batch=8, bucket=cap)
    for it in range(4):
        plain.step(it)
        bucketed.step(it)
    assert_everywhere(COMM, np.array_equal(plain.x, bucketed.x), f"bucket {cap} B: same model")
    assert_everywhere(COMM, plain.ledger.bytes == bucketed.ledger.bytes, "same bytes")
    count = bucketed.summary()[0]["buckets"]
    assert_everywhere(COMM, count == CAPS[cap], f"{count} buckets of {cap} B")


@pytest.mark.parametrize("encoder", ["fp16", "powersgd:r=1"])
def test_one_compressed_bucket_matches_the_unbucketed_compressed_step(encoder: str) -> None:
    lr = lr_of(MLP)
    plain = make("sync", MLP, lr=lr, encoder=encoder)
    bucketed = make("sync", MLP, lr=lr, encoder=encoder, bucket=1 << 20)
    for it in range(3):
        plain.step(it)
        bucketed.step(it)
    close = np.allclose(plain.x, bucketed.x, rtol=1e-5, atol=1e-6)
    assert_everywhere(COMM, close, f"{encoder}: one bucket == unbucketed")

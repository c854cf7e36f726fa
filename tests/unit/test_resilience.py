"""Fault tolerance without MPI failures: which libraries are refused, and shard weighting."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt.problems import get_problem
from hpcopt.resilience import SharedShards, ulfm_problem

MPICH = "MPICH Version:      5.0.2\nMPICH Release date: ..."
OMPI5 = "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11"


@pytest.mark.parametrize(
    "library,env,words",
    [
        (MPICH, {}, "MPICH Version: 5.0.2 has no working ULFM"),
        (OMPI5, {}, "started without it: use mpirun --with-ft ulfm"),
        ("Open MPI v4.1.4, package: Debian", {}, "has no ULFM built in"),
        ("Intel(R) MPI Library 2021.10", {}, "not known to work with Intel(R) MPI"),
    ],
)
def test_refusals_name_the_library(library: str, env: dict, words: str) -> None:
    reason = ulfm_problem(library, env)
    assert reason is not None and words in reason and "\n" not in reason


def test_open_mpi_5_with_ft_is_accepted() -> None:
    assert ulfm_problem(OMPI5, {"OMPI_MCA_mpi_ft_enable": "1"}) is None


def test_survivors_holding_every_shard_keep_the_objective() -> None:
    """Four shards on three survivors (one holds two), each weighted 3/4: the mean of the
    survivors' losses and gradients is f and ∇f of the whole data set."""
    spec, world = "logreg:d=30,n=400", 4
    shards = [get_problem(spec, rank=i, size=world, seed=3) for i in range(world)]
    held = [SharedShards([shards[0], shards[3]], 3 / 4), SharedShards([shards[1]], 3 / 4),
            SharedShards([shards[2]], 3 / 4)]  # fmt: skip
    x = np.random.default_rng(1).standard_normal(30)
    assert np.mean([h.loss_local(x) for h in held]) == pytest.approx(shards[0].full_loss(x))
    grads = np.mean([h.grad_local(x) for h in held], axis=0)
    assert np.allclose(grads, shards[0].full_grad(x))
    batch = held[0].sample_batch(np.random.default_rng(2), 8)
    assert len(batch) == 2 and held[0].grad_local(x, batch).shape == (30,)
    assert held[0].dim == 30 and held[0].spec == shards[0].spec

"""Optimizers: gossip matrices, validation, multi-rank checks and the train kernel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mpirun import ROOT, run_mpi

from hpcopt.errors import UsageError
from hpcopt.log import read_log
from hpcopt.optim import Config, available, mixing_matrix, validate
from hpcopt.optim.run import ARRAYS, lower_bound_bits
from hpcopt.optim.topology import TOPOLOGIES, neighbors

TRAIN = ROOT / "kernels" / "train.py"
SMALL = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"


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
    ("nope", {}, "unknown algorithm"),
    ("choco", {"encoder": "topk"}, "needs --topology"),
    ("dsgd", {"topology": "star"}, "unknown topology"),
    ("dsgd", {"topology": "ring", "exchange": "smoke"}, "unknown exchange"),
    ("choco", {"topology": "ring", "ef": True}, "no --ef"),
    ("sync", {"topology": "ring"}, "takes no --topology"),
    ("sync", {"encoder": "topk", "method": "summable"}, "not summable"),
    ("sync", {"encoder": "topk", "method": "vote"}, "vote needs the sign"),
    ("sync", {"encoder": "powersgd", "method": "allgather"}, "powersgd"),
    ("sync", {"method": "powersgd"}, "needs the powersgd encoder"),
    ("sync", {"encoder": "sign", "ef": True, "method": "two-phase"}, "two-phase"),
    ("sync", {"allreduce": "warp"}, "unknown algorithm"),
    ("local", {"participation": 0.0}, "participation"),
    ("easgd", {"alpha": 1.5}, "alpha"),
]


@pytest.mark.parametrize("algo,knobs,message", BAD_CONFIGS)
def test_bad_configurations_are_usage_errors(algo: str, knobs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(algo, Config(lr=0.1, **knobs), 4)


def test_registry_lists_every_algorithm() -> None:
    assert available() == ["sync", "local", "dsgd", "choco", "easgd"]


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_optimizers_under_mpi(ranks: int) -> None:
    proc = run_mpi(ROOT / "tests" / "mpi_optim.py", ranks, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"all optimizer checks passed on {ranks}" in proc.stdout


def test_train_kernel_logs_one_record_per_run(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    args = ["--problem", SMALL, "--algo", "choco", "--topology", "ring", "--exchange",
            "neighbor", "--encoder", "topk:ratio=0.3", "--eps", "1e-3", "--max-iters", "2000",
            "-o", str(out), "--tag", "unit", "-q"]  # fmt: skip
    proc = run_mpi(TRAIN, 3, *args, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("# hpcopt train") == 1 and "bits to eps" in proc.stdout
    log = read_log(out)
    (rec,) = log.records()
    assert rec["kernel"] == "train" and rec["algo"] == "choco" and rec["ranks"] == 3
    assert rec["reached"] and rec["final_subopt"] <= 1e-3 and rec["dtype"] == "float32"
    assert rec["size_bytes"] == 160 and rec["wire_bytes"] * 8 == pytest.approx(rec["bits_to_eps"])
    assert rec["fp32_bits"] == pytest.approx(rec["messages"] * 32 * 40)
    arrays = log.runs[0].arrays[0]
    assert set(ARRAYS) <= set(arrays) and len(arrays["iter"]) == rec["iters_to_eps"] + 1
    assert arrays["bits"][-1] == pytest.approx(rec["bits_to_eps"])
    assert arrays["consensus"][-1] > 0 and arrays["subopt"][-1] <= 1e-3


BAD_INPUTS = [
    (["--algo", "choco"], "needs --topology"),
    (["--eps", "0"], "--eps must be > 0"),
    (["--algo", "bogus"], "unknown algorithm"),
    (["--encoder", "bogus"], "unknown encoder"),
    (["--problem", "bogus"], "unknown problem"),
    (["--algo", "dsgd", "--topology", "hypercube"], "power-of-two"),
    (["--device", "cuda"], "CPU only"),
    (["--batch", "x"], "invalid int value"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_mpi(TRAIN, 3, "--problem", SMALL, *args, "-o", str(tmp_path / "x.h5"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "x.h5").exists()

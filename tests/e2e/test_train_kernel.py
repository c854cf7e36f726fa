"""The train kernel end to end under mpiexec: its record, arrays, summary and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpirun import ROOT, run_mpi

from hpcopt.log import read_log
from hpcopt.optim.run import ARRAYS

TRAIN = ROOT / "kernels" / "train.py"
SMALL = "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-2"


def test_train_kernel_logs_one_record_per_run(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    args = ["--problem", SMALL, "--algo", "choco:topology=ring,exchange=neighbor",
            "--encoder", "topk:ratio=0.3", "--eps", "1e-3", "--max-iters", "2000",
            "-o", str(out), "--tag", "unit", "-q"]  # fmt: skip
    proc = run_mpi(TRAIN, 3, *args, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("# hpcopt train") == 1 and "bits to eps" in proc.stdout
    log = read_log(out)
    (rec,) = log.records()
    assert rec["kernel"] == "train" and rec["algo"] == "choco" and rec["ranks"] == 3
    assert rec["topology"] == "ring" and rec["exchange"] == "neighbor" and rec["gamma"] == 0.5
    assert rec["reached"] and rec["final_subopt"] <= 1e-3 and rec["dtype"] == "float32"
    assert rec["size_bytes"] == 160 and rec["wire_bytes"] * 8 == pytest.approx(rec["bits_to_eps"])
    assert rec["fp32_bits"] == pytest.approx(rec["messages"] * 32 * 40)
    arrays = log.runs[0].arrays[0]
    assert set(ARRAYS) <= set(arrays) and len(arrays["iter"]) == rec["iters_to_eps"] + 1
    assert arrays["bits"][-1] == pytest.approx(rec["bits_to_eps"])
    assert arrays["consensus"][-1] > 0 and arrays["subopt"][-1] <= 1e-3


BAD_INPUTS = [
    (["--algo", "choco:topology=star"], "not one of ring"),
    (["--eps", "0"], "--eps must be > 0"),
    (["--algo", "bogus"], "unknown optimizer"),
    (["--encoder", "bogus"], "unknown encoder"),
    (["--problem", "bogus"], "unknown problem"),
    (["--algo", "dsgd:topology=hypercube"], "power-of-two"),
    (["--algo", "local:steps=0"], "steps='0' is not a positive integer"),
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

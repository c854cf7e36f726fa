"""The train kernel end to end under mpiexec: its record, arrays, summary and errors."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpirun import ROOT, mpiexec, run_mpi

from hpcopt.log import LogError, partial_path, read_log
from hpcopt.optim.run import ARRAYS
from hpcopt.problems import get_problem

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
    (["--algo", "lag", "--encoder", "powersgd"], "cannot be sent to a root"),
    (["--bucket", "2"], "at least one 4-byte element"),
    (["--bucket", "1K"], "gradient comes layer by layer (mlp), not lstsq"),
    (["--problem", "mlp", "--bucket", "1K", "--encoder", "sign"], "encoders none, fp16"),
    (["--straggler", "3:2"], "0 <= RANK < 3"),
    (["--schedule", "step:every=x"], "every='x' is not an integer"),
    (["--algo", "lag-ps", "--problem", "mlp"], "smoothness constant"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_mpi(TRAIN, 3, "--problem", SMALL, *args, "-o", str(tmp_path / "x.h5"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "x.h5").exists()


def _record(path: Path) -> tuple[dict, dict]:
    log = read_log(path)
    return log.records()[0], log.runs[0].arrays[0]


def test_a_diverging_run_says_so_and_exits_3(tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    proc = run_mpi(TRAIN, 2, "--problem", SMALL, "--lr", "100", "-o", str(out), "-q", timeout=60)
    assert proc.returncode == 3, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("train: diverged: f − f* = ") and "at iteration 1" in line
    assert "# eps not reached: diverged" in proc.stdout
    rec, _ = _record(out)
    assert rec["outcome"] == "diverged" and not rec["reached_eps"]


def test_a_stalled_run_names_its_plateau(tmp_path: Path) -> None:
    spec = "lstsq:d=20,n=200,nnz=4,lowrank=2,lam=1e-1,noise=0.5"
    lr = 0.5 * get_problem(spec, rank=0, size=2, seed=3).default_lr()
    out = tmp_path / "p.h5"
    args = ["--problem", spec, "--seed", "3", "--batch", "4", "--lr", repr(lr), "--eps", "2e-3",
            "--max-iters", "400", "--eval-every", "10", "-o", str(out), "-q"]  # fmt: skip
    proc = run_mpi(TRAIN, 2, *args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    note = [ln for ln in proc.stdout.splitlines() if ln.startswith("# eps not reached")]
    assert len(note) == 1 and note[0].startswith("# eps not reached: plateau at f − f* = ")
    rec, _ = _record(out)
    assert rec["outcome"] == "plateau" and rec["outcome_note"] in note[0]
    assert rec["reached_eps"] is False and "bits_to_eps" not in rec


def test_eps_inf_reaches_at_once_without_a_log_of_zero(tmp_path: Path) -> None:
    out = tmp_path / "i.h5"
    proc = run_mpi(TRAIN, 2, "--problem", SMALL, "--eps", "inf", "-o", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    rec, _ = _record(out)
    assert rec["reached_eps"] and rec["iters_to_eps"] == 0 and rec["survey_bound_bits"] == 0
    assert rec["lower_bound_bits"] == 40 * math.log2(40)


def test_the_trajectory_reaches_the_log_while_the_run_goes_on(tmp_path: Path) -> None:
    """A long run's partial log holds its record and the rows so far; an interrupt keeps them."""
    out = tmp_path / "long.h5"
    args = ["--problem", "lstsq:d=40,n=256,nnz=8,lowrank=2,lam=1e-6", "--batch", "4",
            "--eps", "1e-12", "--max-iters", "10000000", "-o", str(out), "-q"]  # fmt: skip
    cmd = [mpiexec(), "-n", "2", sys.executable, str(TRAIN), *args]
    env = dict(os.environ, MPIEXEC_TIMEOUT="120")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(rows) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                rec, arrays = _record(partial_path(out))
            except (LogError, IndexError):
                continue
            if not rows or len(arrays["iter"]) > rows[-1]:
                rows.append(len(arrays["iter"]))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert len(rows) >= 2 and rows[1] > rows[0] >= 1, rows
    rec, arrays = _record(partial_path(out))
    assert rec["outcome"] in ("running", "interrupted") and rec["kernel"] == "train"
    assert len(arrays["iter"]) >= rows[-1] and list(arrays["iter"][:3]) == [0, 1, 2]


def test_lag_on_the_shipped_real_data_file(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    data = ROOT / "tests" / "data" / "breast_cancer.svm"
    args = ["--problem", f"logreg:data={data},lam=1e-2", "--algo", "lag", "--eps", "1e-4",
            "--max-iters", "3000", "-o", str(out), "-q"]  # fmt: skip
    proc = run_mpi(TRAIN, 3, *args, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rec, _ = _record(out)
    assert rec["reached_eps"] and rec["algo"] == "lag" and rec["uploads"] < 3 * rec["iters"]
    assert rec["bits_to_eps"] == rec["bits"] and rec["dim"] == 30


def test_async_records_its_staleness_histogram_and_progress_mode(tmp_path: Path) -> None:
    out = tmp_path / "a.h5"
    args = ["--problem", SMALL, "--algo", "async:progress=thread", "--eps", "1e-4",
            "--max-iters", "20000", "--eval-every", "10", "-o", str(out), "-q"]  # fmt: skip
    proc = run_mpi(TRAIN, 3, *args, timeout=120, env={"MPICH_ASYNC_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr
    log = read_log(out)
    rec, arrays = log.records()[0], log.runs[0].arrays[0]
    assert rec["reached_eps"] and rec["progress"] == "thread" and rec["servers"] == 1
    assert arrays["staleness_hist"].sum() == rec["applied_updates"] >= rec["iters_to_eps"]
    assert log.runs[0].meta["env"]["MPICH_ASYNC_PROGRESS"] == "0"


def test_a_malformed_data_file_is_one_line_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:0.5\n-1 2:oops\n")
    proc = run_mpi(TRAIN, 2, "--problem", f"logreg:data={bad}", "-o", str(tmp_path / "x.h5"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"train: error: {bad}:2: '2:oops' is not INDEX:VALUE"


def test_async_on_one_rank_is_refused(tmp_path: Path) -> None:
    proc = run_mpi(TRAIN, 1, "--problem", SMALL, "--algo", "async", "-o", str(tmp_path / "x.h5"))
    assert proc.returncode == 2 and "2 ranks or more, not 1" in proc.stderr


def test_sigterm_stops_training_at_a_measurement_with_the_trajectory_saved(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from mpirun import mpiexec

    from hpcopt.output import partial_path

    out = tmp_path / "t.h5"
    # top-k 0.1 % with error feedback needs far more than the test's seconds to reach 1e-14
    args = ["--problem", "logreg:d=2000,n=1024", "--encoder", "topk:ratio=0.001", "--ef",
            "--eps", "1e-14", "--max-iters", "1000000", "-q", "-o", str(out)]  # fmt: skip
    cmd = [mpiexec(), "-n", "2", sys.executable, str(TRAIN), *args]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, MPIEXEC_TIMEOUT="120"))  # fmt: skip
    deadline = time.monotonic() + 60
    while not partial_path(out).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    assert job.poll() is None, "the run ended before the signal; the test needs a longer run"
    found = subprocess.run(["pgrep", "-f", f"{TRAIN}.*{out}"], capture_output=True, text=True)
    for pid in map(int, found.stdout.split()):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if not f.read().startswith(os.fsencode(mpiexec())):
                os.kill(pid, signal.SIGTERM)
    _, err = job.communicate(timeout=90)
    assert job.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == ["train: stopped by SIGTERM; the records so far are in "
                                        "the .partial log"]  # fmt: skip
    (rec,) = read_log(partial_path(out)).records()
    assert rec["outcome"] == "interrupted" and rec["iters"] > 0

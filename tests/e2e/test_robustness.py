"""Long runs that never hang and never lose work: locked outputs, setup failures on any
rank, the watchdog, signals, resume, and bad values refused before anything runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpirun import ROOT, mpiexec, run_mpi

from hpcopt.log import read_log
from hpcopt.output import partial_path

ALLREDUCE = ROOT / "kernels" / "allreduce.py"
P2P = ROOT / "kernels" / "p2p.py"


def sweep(iters: int) -> list[str]:
    """A ring sweep up to 16 MiB with a fixed iteration count (seconds of work)."""
    return ["--algo", "ring", "-b", "8", "-e", "16M", "-n", str(iters), "--fixed-iters", "-q"]


LONG = sweep(200)


def start(out: Path, *args: str, ranks: int = 2) -> subprocess.Popen[str]:
    """A kernel run in the background."""
    env = dict(os.environ, MPIEXEC_TIMEOUT="120", PYTHONUNBUFFERED="1")
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(ALLREDUCE), *args, "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)  # fmt: skip


def ranks_of(out: Path) -> list[int]:
    """PIDs of the Python ranks writing ``out``."""
    found = subprocess.run(["pgrep", "-f", f"{ALLREDUCE}.*-o {out}"], capture_output=True,
                           text=True, check=False).stdout.split()  # fmt: skip
    mine = []
    for pid in map(int, found):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if not f.read().startswith(os.fsencode(mpiexec())):
                mine.append(pid)
    return mine


def wait_for_records(out: Path, count: int, limit_s: float = 60) -> None:
    """Until the partial log holds ``count`` records."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if len(read_log(partial_path(out)).records()) >= count:
                return
        except Exception:
            pass
        time.sleep(0.2)
    pytest.fail(f"{out} never reached {count} records")


def one_line(stderr: str, words: str) -> None:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("Abort(")]
    assert len(lines) == 1 and words in lines[0], stderr
    assert "Traceback" not in stderr


def test_overwrite_cannot_destroy_a_run_in_progress(tmp_path: Path) -> None:
    out = tmp_path / "same.h5"
    first = start(out, *sweep(50))
    wait_for_records(out, 3)
    second = run_mpi(ALLREDUCE, 2, "-e", "1K", "--algo", "ring", "-o", str(out), "--overwrite",
                     timeout=60)  # fmt: skip
    assert second.returncode == 2
    one_line(second.stderr, "another run is writing")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert len(read_log(out).records()) > 3


@pytest.mark.parametrize("target", ["/dev/null", "dir"])
def test_overwrite_replaces_only_regular_files(tmp_path: Path, target: str) -> None:
    path = Path(target) if target.startswith("/") else tmp_path / target
    path.mkdir(exist_ok=True) if target == "dir" else None
    before = os.stat(path).st_mode
    proc = run_mpi(ALLREDUCE, 2, "-e", "64", "-o", str(path), "--overwrite", timeout=60)
    assert proc.returncode == 2
    one_line(proc.stderr, "only regular files are replaced")
    assert os.stat(path).st_mode == before


def test_a_setup_failure_on_rank_0_ends_every_rank(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run_mpi(ALLREDUCE, 3, "-e", "64", "-o", str(tmp_path / ("x" * 300 + ".h5")),
                   timeout=60)  # fmt: skip
    assert proc.returncode == 2 and time.monotonic() - started < 45
    one_line(proc.stderr, "too long")


def test_a_full_disk_at_creation_ends_every_rank(tmp_path: Path) -> None:
    disk = tmp_path / "tiny"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (disk / "filler").write_bytes(b"\0" * 8192)
        proc = run_mpi(ALLREDUCE, 2, "-e", "64", "-o", str(disk / "x.h5"), timeout=60)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert proc.returncode == 2
    one_line(proc.stderr, "cannot write")


@pytest.mark.parametrize(
    "script,ranks,args",
    [
        (ALLREDUCE, 2, ["--algo", "ring,native,rabenseifner"]),
        (ALLREDUCE, 2, ["--algo", "ring", "--encoder", "fp16", "--encoder", "topk:ratio=0.1"]),
        (P2P, 2, []),
    ],
)
def test_no_warmup_still_counts_the_bytes(tmp_path: Path, script: Path, ranks: int, args) -> None:
    out = tmp_path / "w0.h5"
    proc = run_mpi(script, ranks, "-b", "64", "-e", "1K", "-w", "0", "-n", "3", "-q", *args,
                   "-o", str(out), timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert all(r["wire_bytes"] > 0 for r in read_log(out).records())


BAD_VALUES = [
    (["-b", "1", "-e", "1"], "less than one float32 element"),
    (["-b", "7", "-e", "7", "--dtype", "float64"], "less than one float64 element"),
    (["-f", "inf"], "finite number > 1"),
    (["-f", "1.0000001", "-e", "64M"], "more than 1000 sizes"),
    (["-n", "1000000000"], "GiB are available"),
    (["-b", "64G", "-e", "64G"], "GiB are available"),
    (["--encoder", "fp16", "--method", "vote"], "vote needs the sign"),
    (["--encoder", "topk", "--encoder", "topk"], "topk given twice"),
    (["--timeout", "-1"], "--timeout must be"),
    (["--resume", "nothing.h5.partial"], "drop -o and --overwrite"),
]


@pytest.mark.parametrize("args,message", BAD_VALUES)
def test_bad_values_are_refused_before_anything_runs(args: list[str], message: str, tmp_path):
    proc = run_mpi(ALLREDUCE, 2, *args, "-o", str(tmp_path / "x.h5"), timeout=60)
    assert proc.returncode == 2
    one_line(proc.stderr, message)
    assert not list(tmp_path.iterdir())


def test_rounded_sizes_are_announced(tmp_path: Path) -> None:
    proc = run_mpi(ALLREDUCE, 2, "-b", "8", "-e", "64", "-f", "1.5", "--dtype", "float64",
                   "--algo", "ring", "-n", "2", "-q", "-o", str(tmp_path / "r.h5"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rounded down to whole float64 elements: 12 -> 8" in proc.stdout


def test_a_stopped_rank_ends_the_job_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "stop.h5"
    job = start(out, *LONG, "--timeout", "3")
    wait_for_records(out, 2)
    stopped = ranks_of(out)[-1]
    os.kill(stopped, signal.SIGSTOP)
    try:
        _, err = job.communicate(timeout=90)
    finally:
        os.kill(stopped, signal.SIGKILL)
    assert job.returncode != 0
    assert "no progress for 3 s in allreduce ring" in err and "at " in err, err
    log = read_log(partial_path(out))
    assert log.partial and len(log.records()) >= 2


def test_sigterm_stops_at_a_record_and_resume_finishes_the_log(tmp_path: Path) -> None:
    out = tmp_path / "term.h5"
    job = start(out, *LONG)
    wait_for_records(out, 4)
    for pid in ranks_of(out):
        os.kill(pid, signal.SIGTERM)
    _, err = job.communicate(timeout=90)
    assert job.returncode == 128 + signal.SIGTERM, err
    one_line(err, "stopped by SIGTERM")
    kept = read_log(partial_path(out)).records()
    other = run_mpi(ALLREDUCE, 2, *sweep(10), "--resume", str(partial_path(out)), timeout=60)
    assert other.returncode == 2
    one_line(other.stderr, "not the same flags")
    done = run_mpi(ALLREDUCE, 2, *LONG, "--resume", str(partial_path(out)), timeout=240)
    assert done.returncode == 0, done.stderr
    log = read_log(out)
    sizes = [r["size_bytes"] for r in log.records()]
    assert sizes == [8 << i for i in range(22)] and len(log.runs) == 1
    assert sizes[: len(kept)] == [r["size_bytes"] for r in kept]
    assert not partial_path(out).exists() and log.runs[0].meta["resumed"]

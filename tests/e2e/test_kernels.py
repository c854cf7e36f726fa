"""The allreduce and p2p kernels end to end under mpiexec: logs, output, exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpirun import ROOT, mpiexec, run_mpi

from hpcopt.collectives import ALLREDUCE as ALLREDUCE_ALGORITHMS
from hpcopt.log import partial_path, read_log

ALLREDUCE = ROOT / "kernels" / "allreduce.py"
P2P = ROOT / "kernels" / "p2p.py"
FAULTY = ROOT / "tests" / "helpers" / "faulty_kernel.py"
QUICK = ["-n", "3", "-w", "1", "-q"]


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_allreduce_kernel_sweeps_every_algorithm(tmp_path: Path, ranks: int) -> None:
    out = tmp_path / "a.h5"
    proc = run_mpi(
        ALLREDUCE,
        ranks,
        "-b",
        "0",
        "-e",
        "4K",
        "-f",
        "4",
        *QUICK,
        "-o",
        str(out),
        "--tag",
        "unit",
        "--dtype",
        "int64",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("# hpcopt allreduce") == 1, "only rank 0 prints"
    log = read_log(out)
    meta = log.runs[0].meta
    assert meta["ranks"] == ranks and meta["tag"] == "unit" and len(meta["hosts"]) == ranks
    assert meta["thread_level"] == "multiple" and meta["mpi_library_version"]
    records = log.records()
    assert {r["algo"] for r in records} == set(ALLREDUCE_ALGORITHMS.names())
    assert sorted({r["size_bytes"] for r in records}) == [0, 16, 64, 256, 1024, 4096]
    assert all(r["wrong"] == 0 and r["checked"] for r in records)
    ring = next(r for r in records if r["algo"] == "ring" and r["size_bytes"] == 4096)
    per_chunk = 4096 // ranks // 8 * 8
    assert ring["wire_bytes"] >= (0 if ranks == 1 else 2 * (ranks - 1) * per_chunk)
    assert len(records) == len(ALLREDUCE_ALGORITHMS.names()) * 6
    assert log.runs[0].arrays[0]["times_s"].shape == (ranks, 3)


def test_p2p_kernel_records_latency_and_bandwidth(tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    proc = run_mpi(P2P, 2, "-b", "1", "-e", "1M", "-f", "16", *QUICK, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    records = read_log(out).records()
    assert {r["algo"] for r in records} == {"pingpong", "stream"}
    assert all(r["wrong"] == 0 and r["t_avg_s"] > 0 for r in records)
    stream = [r for r in records if r["algo"] == "stream"]
    assert stream[-1]["messages_per_call"] == 64 and stream[-1]["wire_bytes"] == 64 << 20


BAD_INPUTS = [
    (ALLREDUCE, 2, ["--algo", "bogus"], "unknown algorithm"),
    (ALLREDUCE, 2, ["-b", "abc"], "cannot parse size"),
    (ALLREDUCE, 2, ["-b", "1M", "-e", "1K"], "larger than max"),
    (ALLREDUCE, 2, ["-b", "-8"], "negative"),
    (ALLREDUCE, 2, ["--dtype", "float16"], "unknown dtype"),
    (ALLREDUCE, 2, ["--device", "cuda"], "cuda"),
    (ALLREDUCE, 2, ["-o", "/proc/forbidden/x.h5"], "cannot create output folder"),
    (ALLREDUCE, 2, ["--no-such-flag"], "unrecognized arguments"),
    (P2P, 3, [], "exactly 2 ranks"),
    (P2P, 1, [], "exactly 2 ranks"),
]


@pytest.mark.parametrize("script,ranks,args,message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(script, ranks, args, message, tmp_path) -> None:
    started = time.monotonic()
    extra = [] if "-o" in args else ["-o", str(tmp_path / "x.h5")]
    proc = run_mpi(script, ranks, *args, *extra, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert time.monotonic() - started < 30


def test_existing_output_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "a.h5"
    out.write_text("precious")
    proc = run_mpi(ALLREDUCE, 2, "-o", str(out), timeout=60)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert out.read_text() == "precious"


def test_wrong_results_make_the_exit_status_nonzero(tmp_path: Path) -> None:
    out = tmp_path / "w.h5"
    proc = run_mpi(FAULTY, 2, "--algo", "corrupting-ring", "-e", "64", *QUICK, "-o", str(out))
    assert proc.returncode == 1
    assert "WRONG" in proc.stdout
    assert all(r["wrong"] == 1 for r in read_log(out).records())


def test_a_rank_that_raises_aborts_the_job_and_keeps_completed_sizes(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    started = time.monotonic()
    proc = run_mpi(
        FAULTY,
        3,
        "--algo",
        "raising-ring",
        "-b",
        "8",
        "-e",
        "64",
        *QUICK,
        "-o",
        str(out),
        timeout=60,
    )
    assert proc.returncode != 0 and time.monotonic() - started < 60
    assert "error on rank 1" in proc.stderr and "planted failure" in proc.stderr
    log = read_log(partial_path(out))
    assert log.partial and [r["size_bytes"] for r in log.records()] == [8]


def test_killed_run_leaves_every_completed_size(tmp_path: Path) -> None:
    out = tmp_path / "k.h5"
    cmd = [
        mpiexec(),
        "-n",
        "2",
        sys.executable,
        str(ALLREDUCE),
        "--algo",
        "ring",
        "-b",
        "8",
        "-e",
        "8",
        "-f",
        "1",
        "-q",
        "-o",
        str(out),
    ]
    # A sweep of many repeated sizes is long enough to be killed in the middle.
    cmd[cmd.index("-e") + 1] = "64M"
    cmd[cmd.index("-f") + 1] = "1.02"
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    partial = partial_path(out)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if partial.exists() and _records_in(partial) >= 3:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.wait(timeout=30)
    log = read_log(partial)
    assert log.partial and len(log.records()) >= 3
    assert all(r["wrong"] == 0 for r in log.records())


def _records_in(path: Path) -> int:
    try:
        return len(read_log(path).records())
    except Exception:
        return 0


COMPRESS = ROOT / "kernels" / "compress.py"


def test_compress_kernel_reports_throughput_ratio_and_error(tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    proc = run_mpi(
        COMPRESS,
        1,
        "-b",
        "64K",
        "-e",
        "64K",
        "--encoder",
        "sign",
        "--encoder",
        "fp16",
        "--encoder",
        "topk:ratio=0.01",
        *QUICK,
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    records = {r["encoder"]: r for r in read_log(out).records()}
    assert set(records) == {"sign", "fp16", "topk:ratio=0.01"}
    assert records["sign"]["wire_bytes"] == 65536 // 4 // 8 + 4
    assert records["fp16"]["compression_ratio"] == 2.0
    for rec in records.values():
        assert rec["encode_GBps"] > 0 and rec["decode_GBps"] > 0 and 0 <= rec["rel_error"] < 1


@pytest.mark.parametrize("ranks", [1, 3])
def test_compressed_allreduce_through_the_kernel(tmp_path: Path, ranks: int) -> None:
    out = tmp_path / "ca.h5"
    proc = run_mpi(
        ALLREDUCE,
        ranks,
        "-b",
        "4K",
        "-e",
        "4K",
        "--algo",
        "ring,tree",
        "--encoder",
        "none",
        "--encoder",
        "fp16",
        "--encoder",
        "topk:ratio=0.1",
        *QUICK,
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    records = read_log(out).records()
    labels = {(r["algo"], r["encoder"]) for r in records}
    assert labels == {
        ("ring", "none"),
        ("tree", "none"),
        ("ring", "fp16"),
        ("tree", "fp16"),
        ("allgather", "topk:ratio=0.1"),
    }
    plain = [r for r in records if r["encoder"] == "none"]  # the uncompressed algorithms
    assert all(r["wrong"] == 0 and "method" not in r and "t_encode_s" not in r for r in plain)
    fp16 = [r for r in records if r["encoder"] == "fp16"]
    assert all(r["wire_bytes"] <= 2 * 4096 and r["rel_error"] < 1e-3 for r in fp16)
    compressed = [r for r in records if r["encoder"] != "none"]
    assert all("t_encode_s" in r and "t_communicate_s" in r for r in compressed)
    assert "topk:ratio=0.1: payloads that do not sum are combined by allgather" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--encoder", "nope"], "unknown encoder"),
        (["--ef"], "need --encoder"),
        (["--encoder", "fp16", "--dtype", "int32"], "float32"),
        (["--encoder", "bf16", "--algo", "ring"], "native algorithm"),
        (["--encoder", "topk", "--method", "vote"], "vote needs the sign"),
        (["--encoder", "sign", "--ef", "--method", "two-phase"], "no error feedback"),
        (["--algo", "ring-pipelined:segment=0"], "segment='0' is not a size"),
        (["--algo", "ring,ring"], "ring given twice"),
        (["--encoder", "topk:ratio=0.1,ratio=0.5"], "ratio given twice"),
    ],
)
def test_bad_compression_flags(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_mpi(ALLREDUCE, 2, *args, "-o", str(tmp_path / "x.h5"), timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

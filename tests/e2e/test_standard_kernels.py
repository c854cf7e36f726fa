"""The standard set end to end under mpiexec: every collective kernel, neighbourhood
exchange, p2p patterns, timers, thread level, buffer sets, modes, measured bytes, refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mpirun import ROOT, run_mpi

from hpcopt import timer
from hpcopt.cli import main as hpcopt_main
from hpcopt.collectives import COLLECTIVES
from hpcopt.log import read_log

QUICK = ["-n", "3", "-w", "1", "-q"]
C_TIMER = timer.status().available


def kernel(name: str) -> Path:
    return ROOT / "kernels" / f"{name}.py"


def run_kernel(name: str, ranks: int, tmp_path: Path, *args: str, env=None) -> tuple:
    """Run a kernel to a log; (completed process, run metadata, records)."""
    out = tmp_path / f"{name}-{ranks}.h5"
    proc = run_mpi(kernel(name), ranks, *QUICK, "-o", str(out), "--overwrite", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = read_log(out).runs
    return proc, run.meta, run.records


@pytest.mark.parametrize("name", [n for n in COLLECTIVES if n != "allreduce"])
def test_every_collective_kernel_checks_every_algorithm(name: str, tmp_path: Path) -> None:
    """3 ranks (odd, not a power of two), sizes 0 to 1 KiB, every algorithm, all correct."""
    owner = COLLECTIVES[name]
    extra = ["--root", "rotate"] if owner.operation.rooted else []
    proc, meta, records = run_kernel(name, 3, tmp_path, "-b", "0", "-e", "1K", "-f", "8", *extra)
    assert owner.operation.size_meaning in proc.stdout and meta["kernel"] == name
    assert {r["algo"] for r in records} == set(owner.names())
    assert all(r["wrong"] == 0 and r["checked"] and r["mode"] == "blocking" for r in records)
    for rec in records:
        native = rec["algo"].startswith("native")
        assert rec["wire_bytes_kind"] == ("nominal" if native else "counted")
        assert rec["timer"] == ("c" if native and C_TIMER else "python")
        assert not owner.operation.rooted or rec["rotate_root"]
    if name == "barrier":
        assert [r["size_bytes"] for r in records] == [0]


def test_barrier_runs_with_the_default_sizes(tmp_path: Path) -> None:
    """A barrier moves no data: any sweep (the defaults start at 8 B) is one record at 0 B."""
    _, _, records = run_kernel("barrier", 2, tmp_path, "-e", "1M")
    assert [r["size_bytes"] for r in records] == [0] and records[0]["wrong"] == 0


def test_default_sizes_skip_what_is_below_one_element_of_the_operation(tmp_path: Path) -> None:
    """reduce_scatter's size is p blocks: on 3 ranks 8 B is below one element of it. The
    default smallest size skips it with a note; a -b the user chose is refused."""
    proc, _, records = run_kernel("reduce_scatter", 3, tmp_path, "-e", "64", "--algo", "ring")
    assert "below one float32 element of this operation (12 B) skipped: 8" in proc.stdout
    assert [r["size_bytes"] for r in records] == [12, 24, 60]
    refused = run_mpi(kernel("reduce_scatter"), 3, "-b", "8", "-e", "64", "-o",
                      str(tmp_path / "no.h5"))  # fmt: skip
    assert refused.returncode == 2 and "use -b 12 or more" in refused.stderr


@pytest.mark.parametrize("name", ["allgather", "reduce_scatter"])
def test_the_suites_short_sweeps_run_on_3_and_4_ranks(name: str, tmp_path: Path) -> None:
    """hpcopt suite runs one rank per core up to 4: its sweeps must run there too."""
    from hpcopt.suite import SHORT_SWEEP

    for ranks in (3, 4):
        _, _, records = run_kernel(name, ranks, tmp_path, *SHORT_SWEEP, "-e", "64K")
        assert records and all(r["wrong"] == 0 for r in records)


def test_neighbourhood_exchange_per_topology(tmp_path: Path) -> None:
    topologies = "ring,torus,hypercube,exponential,complete"
    _, _, records = run_kernel("neighbor", 4, tmp_path, "-b", "8", "-e", "4K", "-f", "8",
                               "--topology", topologies)  # fmt: skip
    degrees = {(r["topology"], r["algo"]): r["degree"] for r in records}
    assert degrees[("ring", "p2p")] == 2 and degrees[("complete", "native")] == 3
    assert degrees[("hypercube", "p2p")] == 2 and len(degrees) == 10
    assert all(r["wrong"] == 0 for r in records)
    ring = next(r for r in records if r["topology"] == "ring" and r["size_bytes"] == 4096)
    assert ring["algbw_GBps"] == pytest.approx(2 * 4096 / ring["t_avg_s"] / 1e9)


def test_multi_pair_latency_and_bandwidth(tmp_path: Path) -> None:
    _, _, records = run_kernel("p2p", 4, tmp_path, "-b", "64", "-e", "4K", "-f", "64",
                               "--pattern", "multi", "--window", "8")  # fmt: skip
    assert {r["algo"] for r in records} == {"multi", "stream"}
    assert all(r["pairs"] == 2 and r["wrong"] == 0 for r in records)
    stream = next(r for r in records if r["algo"] == "stream" and r["size_bytes"] == 4096)
    assert stream["msg_rate_per_s"] == pytest.approx(2 / stream["t_avg_s"])
    assert stream["algbw_GBps"] == pytest.approx(2 * 4096 / stream["t_avg_s"] / 1e9)


@pytest.mark.skipif(not C_TIMER, reason="the C timer is not available here")
def test_c_and_python_timers_agree_on_correctness_and_bytes(tmp_path: Path) -> None:
    runs = {}
    for choice in ("c", "python"):
        for name, args in (("allgather", ["--algo", "native,native-oop"]),
                           ("p2p", ["--pattern", "pingpong,stream,bibw"])):  # fmt: skip
            out = tmp_path / choice
            out.mkdir(exist_ok=True)
            _, _, records = run_kernel(name, 2, out, "-b", "8", "-e", "64K", "-f", "32",
                                       "--timer", choice, *args)  # fmt: skip
            runs[(choice, name)] = records
    for name in ("allgather", "p2p"):
        c, py = runs[("c", name)], runs[("python", name)]
        assert [r["timer"] for r in c] == ["c"] * len(c) and {r["timer"] for r in py} == {"python"}
        assert all(r["wrong"] == 0 for r in c + py)
        assert [(r["algo"], r["size_bytes"], r["wire_bytes"]) for r in c] == [
            (r["algo"], r["size_bytes"], r["wire_bytes"]) for r in py
        ]


def test_thread_level_and_buffer_sets_are_recorded(tmp_path: Path) -> None:
    _, meta, records = run_kernel("allgather", 2, tmp_path, "-b", "64", "-e", "64",
                                  "--thread-level", "single", "--buffers", "3")  # fmt: skip
    assert meta["thread_level"] == "single" and meta["thread_level_requested"] == "single"
    assert meta["buffers"] == 3 and all(r["buffers"] == 3 for r in records)
    _, meta, records = run_kernel("p2p", 2, tmp_path, "-b", "64", "-e", "64", "--buffers", "auto")
    assert meta["buffers"] == "auto" and meta["llc_bytes"] > 0
    assert all(r["buffers"] == 4 and r["wrong"] == 0 for r in records)  # one per call


@pytest.mark.skipif(not C_TIMER, reason="the C timer is not available here")
def test_nonblocking_overlap_and_persistent_modes(tmp_path: Path) -> None:
    _, meta, records = run_kernel(
        "allreduce", 2, tmp_path, "-b", "4K", "-e", "4K", "--mode", "nonblocking",
        "--test-calls", "2", env={"MPICH_ASYNC_PROGRESS": "0"},
    )  # fmt: skip
    assert meta["env"]["MPICH_ASYNC_PROGRESS"] == "0"
    assert {r["algo"] for r in records} == {"native", "native-oop"}
    for rec in records:
        assert rec["mode"] == "nonblocking" and rec["test_calls"] == 2
        assert rec["t_pure_s"] > 0 and rec["t_compute_s"] > 0 and 0 <= rec["overlap_pct"] <= 100
    if not timer.status().persistent:
        pytest.skip("this MPI has no persistent collectives")
    _, _, records = run_kernel("reduce_scatter", 2, tmp_path, "-b", "64", "-e", "64",
                               "--mode", "persistent")  # fmt: skip
    assert all(r["mode"] == "persistent" and r["wrong"] == 0 for r in records)


def test_measured_interface_bytes_on_a_tcp_link(tmp_path: Path) -> None:
    """MPICH over TCP on loopback: the interface sent at least the message each way."""
    env = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp",
           "HPCOPT_WIRE_IFACE": "lo"}  # fmt: skip
    _, meta, records = run_kernel("p2p", 2, tmp_path, "-b", "64K", "-e", "64K",
                                  "--pattern", "pingpong", env=env)  # fmt: skip
    assert meta["wire_interface"] == "lo"
    (rec,) = records
    assert rec["wire_bytes_kind"] == "counted" and rec["wire_bytes"] == 65536
    assert rec["wire_bytes_measured"] >= 2 * 65536  # both ranks' messages cross lo


BAD = [
    ("allgather", 2, ["--timer", "bogus"], "invalid choice"),
    ("allgather", 2, ["--thread-level", "bogus"], "invalid choice"),
    ("allgather", 2, ["--buffers", "0"], "--buffers"),
    ("bcast", 2, ["--root", "2"], "root 2 is outside the communicator of 2 ranks"),
    ("bcast", 2, ["--algo", "native-oop"], "unknown bcast algorithm"),
    ("gather", 2, ["--root", "x"], "--root must be a rank or rotate"),
    ("p2p", 4, ["--pattern", "bibw"], "bibw needs exactly 2 ranks"),
    ("p2p", 3, ["--pattern", "multi"], "needs an even rank count"),
    ("allgather", 2, ["--mode", "nonblocking", "--algo", "ring"], "no such mode"),
    ("allgather", 2, ["--mode", "nonblocking", "--timer", "python"], "C core only"),
    ("reduce_scatter", 2, ["--test-calls", "3"], "--mode nonblocking"),
    ("neighbor", 3, ["--topology", "hypercube"], "power-of-two"),
    ("alltoall", 2, ["--dtype", "float16"], "unknown dtype"),
]


@pytest.mark.parametrize("name,ranks,args,message", BAD)
def test_impossible_options_are_one_line_and_exit_2(name, ranks, args, message, tmp_path):
    started = time.monotonic()
    proc = run_mpi(kernel(name), ranks, *args, "-o", str(tmp_path / "x.h5"), timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not (tmp_path / "x.h5").exists()
    assert time.monotonic() - started < 45


def test_wrong_results_of_a_collective_kernel_exit_1(tmp_path: Path) -> None:
    """A plugin algorithm that corrupts one element: counted, shown, exit status 1."""
    env = {"HPCOPT_PLUGINS": "faulty_plugin", "PYTHONPATH": str(ROOT / "tests" / "helpers")}
    out = tmp_path / "w.h5"
    proc = run_mpi(kernel("allgather"), 3, *QUICK, "-b", "64", "-e", "64", "--algo",
                   "corrupting,ring", "-o", str(out), env=env)  # fmt: skip
    assert proc.returncode == 1 and "WRONG" in proc.stdout, proc.stderr
    wrong = {r["algo"]: r["wrong"] for r in read_log(out).records()}
    assert wrong == {"corrupting": 1, "ring": 0}


def test_without_a_compiler_auto_falls_back_and_c_is_refused(tmp_path: Path) -> None:
    env = {"MPICC": str(tmp_path / "no-such-mpicc"), "HPCOPT_CACHE": str(tmp_path / "cache")}
    _, meta, records = run_kernel("allgather", 2, tmp_path, "-b", "64", "-e", "64", "--algo",
                                  "native", env=env)  # fmt: skip
    assert meta["timer"] == "python" and [r["timer"] for r in records] == ["python"]
    proc = run_mpi(kernel("allgather"), 2, "--timer", "c", "-o", str(tmp_path / "c.h5"),
                   env=env, timeout=60)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "C timer is not available" in lines[0]


def test_model_fits_an_allgather_sweep(tmp_path: Path, capsys) -> None:
    run_kernel("allgather", 2, tmp_path, "-b", "1K", "-e", "64K", "-f", "4", "--algo", "ring")
    assert hpcopt_main(["model", "fit", str(tmp_path / "allgather-2.h5")]) == 0
    assert "allgather:ring" in capsys.readouterr().out

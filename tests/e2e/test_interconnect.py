"""jobs/interconnect.sh: each link runs the kernels, shaped links deliver their set rates, the
two-level and uneven topologies are what MPI and the log see, and nothing is left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpcopt.log import read_log
from hpcopt.slurm import ROOT

SCRIPT = ROOT / "jobs" / "interconnect.sh"
pytestmark = pytest.mark.timeout(300)


def _netns_usable() -> str | None:
    """Why network namespaces can't be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"hpcopt-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


def _namespaces() -> list[str]:
    """Names of the network namespaces that exist now."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]


def _run(link: str, out: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the p2p kernel over LINK into OUT; the result and the script's PID."""
    return _launch(link, "p2p", "-o", str(out), "-q", *flags)


def _launch(link: str, *kernel_args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run KERNEL_ARGS (a kernel and its flags) over LINK; the result and the script's PID."""
    argv = [str(SCRIPT), link, "--", *kernel_args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr), proc.pid


@pytest.fixture(scope="module")
def netns() -> None:
    """Skip unless network namespaces can be created here."""
    reason = _netns_usable()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.parametrize("link", ["shm", "tcp"])
def test_local_links_tag_and_check(link: str, tmp_path: Path) -> None:
    """shm and tcp runs succeed, are tagged with the link and carry its MPI settings."""
    done, _ = _run(link, tmp_path / "p2p.h5", "-b", "1K", "-e", "64K", "-f", "8", "-n", "5")
    assert done.returncode == 0, done.stderr
    (run,) = read_log(tmp_path / "p2p.h5").runs
    assert run.meta["tag"] == link
    assert all(r["wrong"] == 0 for r in run.records)
    assert (run.meta["env"].get("FI_PROVIDER") == "tcp") == (link == "tcp")


def test_veth_1gbit_bandwidth(netns: None, tmp_path: Path) -> None:
    """At 1 Gbit/s shaping, 16 MiB streaming runs within 10 % of 0.125 GB/s; no namespace stays."""
    done, pid = _run(
        "veth:1gbit", tmp_path / "p2p.h5", "-b", "16M", "-e", "16M", "--pattern", "stream",
        "-w", "1", "-n", "3", "--tag", "veth-1g",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not [ns for ns in _namespaces() if ns.startswith(f"hpcopt-{pid}-")]
    (run,) = read_log(tmp_path / "p2p.h5").runs
    (record,) = run.records
    assert run.meta["tag"] == "veth-1g" and record["wrong"] == 0
    assert record["algbw_GBps"] == pytest.approx(0.125, rel=0.10)


def test_veth_delay(netns: None, tmp_path: Path) -> None:
    """A 2 ms delay adds about 2 ms to the one-way latency, or is refused in one line."""
    done, pid = _run(
        "veth:1gbit:2000", tmp_path / "p2p.h5", "-b", "8", "-e", "8", "--pattern", "pingpong",
        "--barrier", "none", "-w", "3", "-n", "10",
    )  # fmt: skip
    assert not [ns for ns in _namespaces() if ns.startswith(f"hpcopt-{pid}-")]
    if done.returncode == 2 and "install iptables" in done.stderr:
        assert len(done.stderr.strip().splitlines()) == 1
        pytest.skip("no netem and no iptables here: the delay is refused")
    assert done.returncode == 0, done.stderr
    (run,) = read_log(tmp_path / "p2p.h5").runs
    (record,) = run.records
    assert run.meta["tag"] == "veth:1gbit:2000" and record["wrong"] == 0
    # Without a barrier per iteration both ranks time whole round trips (no barrier skew).
    assert 1.95e-3 < record["t_avg_s"] < 4e-3


def _left_behind(pid: int) -> list[str]:
    """Namespaces of the script run PID that still exist."""
    return [ns for ns in _namespaces() if ns.startswith(f"hpcopt-{pid}-")]


def test_two_level_nodes_are_what_mpi_and_the_log_see(netns: None, tmp_path: Path) -> None:
    """2 nodes × 2 ranks: shared memory splits by namespace; the log records the topology;
    the hierarchical collective and the hierarchical compressed path are exact there."""
    out = tmp_path / "a.h5"
    done, pid = _launch(
        "two-level:2x2:1gbit", "allreduce", "--algo", "hierarchical,ring", "-b", "64K", "-e",
        "64K", "-n", "3", "-w", "1", "-q", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not _left_behind(pid)
    (run,) = read_log(out).runs
    meta = run.meta
    assert meta["ranks"] == 4 and meta["nodes"] == 2 and meta["shared_memory_nodes"] == [0, 0, 2, 2]
    topo = meta["topology"]
    assert topo["kind"] == "two-level" and topo["spec"] == "two-level:2x2:1gbit"
    assert [n["ranks"] for n in topo["nodes"]] == [[0, 1], [2, 3]]
    assert all(n["rate_bps"] == 10**9 and n["delay_us"] == 0 for n in topo["nodes"])
    assert all(r["wrong"] == 0 for r in run.records) and len(run.records) == 2
    done, pid = _launch(
        "two-level:2x2:1gbit", "allreduce", "--algo", "ring", "--encoder", "none", "--method",
        "hierarchical", "-b", "64K", "-e", "64K", "-n", "3", "-w", "1", "-q", "-o",
        str(tmp_path / "h.h5"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (rec,) = read_log(tmp_path / "h.h5").records()
    assert rec["wrong"] == 0 and rec["inter_bytes"] == 64 << 10 and rec["intra_bytes"] == 64 << 10


RATES = [
    ("two-level:2x1:1gbit", "16M", 0.125),  # node uplink and switch port at 1 Gbit/s
    ("uneven:100mbit,1gbit", "256K", 0.0125),  # the sender's uplink is the slow one
    ("uneven:1gbit,100mbit", "256K", 0.0125),  # the receiver's switch port is the slow one
]


@pytest.mark.parametrize("link,size,rate", RATES)
def test_shaped_rates_are_measured_within_10_percent(
    netns: None, tmp_path: Path, link: str, size: str, rate: float
) -> None:
    """Streaming from rank 0 to rank 1 runs at the slowest link on its way, within 10 %."""
    done, pid = _run(
        link, tmp_path / "p2p.h5", "-b", size, "-e", size, "--pattern", "stream", "-w", "1",
        "-n", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not _left_behind(pid)
    (record,) = read_log(tmp_path / "p2p.h5").records()
    assert record["wrong"] == 0 and record["tag"] == link
    assert record["algbw_GBps"] == pytest.approx(rate, rel=0.10)


def test_namespaces_are_removed_when_the_kernel_fails(netns: None, tmp_path: Path) -> None:
    """A rank that raises aborts the job: the script exits nonzero and removes everything."""
    faulty = ROOT / "tests" / "helpers" / "faulty_kernel.py"
    done, pid = _launch(
        "two-level:2x1:1gbit", str(faulty), "--algo", "raising-ring", "-b", "8", "-e", "64",
        "-n", "2", "-w", "1", "-q", "-o", str(tmp_path / "f.h5"),
    )  # fmt: skip
    assert done.returncode != 0 and "planted failure" in done.stderr
    assert not _left_behind(pid)
    assert (tmp_path / "f.h5.partial").exists()


@pytest.mark.parametrize(
    "link,words",
    [
        ("two-level:2:1gbit", "bad two-level shape '2'"),
        ("two-level:1x2:1gbit", "2 to 64 nodes"),
        ("two-level:2x2", "needs a RATE"),
        ("two-level:2x2:fast", "bad rate 'fast'"),
        ("uneven:1gbit", "2 to 64 rates"),
        ("uneven:1gbit,1gbit@x", "bad DELAY_US 'x'"),
    ],
)
def test_bad_topologies_are_one_line(netns: None, link: str, words: str) -> None:
    done, pid = _launch(link, "p2p")
    assert done.returncode == 2 and not _left_behind(pid)
    (line,) = done.stderr.strip().splitlines()
    assert words in line

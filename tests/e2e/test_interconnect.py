"""jobs/interconnect.sh: each link runs the p2p kernel, a shaped veth delivers its set rate."""

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
    argv = [str(SCRIPT), link, "--", "p2p", "-o", str(out), "-q", *flags]
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

"""A one-node Slurm cluster on localhost for the tests: install, start, submit, stop."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SlurmCluster",
    "ensure_slurm",
    "mpich_segments",
    "remove_mpich_segments",
    "segment_key",
    "slurm_cluster",
]

DAEMONS = ("slurmctld", "slurmd", "sbatch", "sinfo")
CPUS = 4
# MPICH (ch4) names its node shared memory /dev/shm/mpich_{shm,vci}_HASH_NODE after the PMI
# job id, which Slurm's pmi2 plugin sets to JOBID.STEPID, and a step killed after MPI_Init
# leaves it there. A fresh slurmctld numbers jobs from 1 again, so the first step of every
# later fresh cluster on the host ("1.0") opened that stale segment and failed in MPI_Init.
# Each cluster therefore takes its own block of job ids, and its epilog removes the
# segments of the job's steps.
JOB_ID_BLOCK = 1000
JOB_ID_BLOCKS = 60_000
EPILOG_STEPS = 64
SHM_DIR = Path("/dev/shm")


def ensure_slurm() -> str | None:
    """Install Debian's slurm-wlm when missing; the reason it is unusable, or None."""
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if os.geteuid() != 0:
        return "Slurm is not installed and installing it needs root"
    if shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} timed out"
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}"
    return None if all(shutil.which(d) for d in DAEMONS) else "slurm-wlm installed no daemons"


def _free_port() -> int:
    """A TCP port free on loopback right now."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fnv1a(text: str) -> int:
    """32-bit FNV-1a hash of TEXT, as MPICH hashes the PMI job id."""
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


def segment_key(job_id: str, step: int) -> str:
    """The HASH in the names of the MPICH segments of step JOB_ID.STEP."""
    return f"{_fnv1a(f'{job_id}.{step}'):x}"


def mpich_segments(job_id: str, steps: int = EPILOG_STEPS) -> list[Path]:
    """MPICH shared-memory files in /dev/shm left by steps 0..STEPS-1 of JOB_ID."""
    found: list[Path] = []
    for step in range(steps):
        key = segment_key(job_id, step)
        for kind in ("shm", "vci"):
            found += SHM_DIR.glob(f"mpich_{kind}_{key}_*")
    return found


def remove_mpich_segments(job_id: str) -> None:
    """Remove what mpich_segments finds; never fail (a failing epilog drains the node)."""
    for path in mpich_segments(job_id):
        try:
            path.unlink()
        except OSError:
            continue


def _write_epilog(root: Path) -> Path:
    """An epilog script that removes the finished job's MPICH segments."""
    epilog = root / "epilog"
    epilog.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from slurm_cluster import remove_mpich_segments\n"
        "remove_mpich_segments(os.environ.get('SLURM_JOB_ID', ''))\n"
    )
    epilog.chmod(0o755)
    return epilog


def _config(root: Path, node: str) -> str:
    """slurm.conf for one node on 127.0.0.1, every path under ROOT."""
    first_job_id = JOB_ID_BLOCK * (1 + secrets.randbelow(JOB_ID_BLOCKS))
    return f"""\
ClusterName=hpcopt-test
FirstJobId={first_job_id}
Epilog={_write_epilog(root)}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=pmi2
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=2
MinJobAge=5
NodeName={node} NodeAddr=127.0.0.1 CPUs={CPUS} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running one-node cluster: its folder, config file, node name and partition."""

    root: Path
    conf: Path
    node: str
    partition: str = "debug"

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm commands against this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command under `timeout`, never hanging the test."""
        argv = ["timeout", "-k", "5", str(timeout), *cmd]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True)

    def wait_idle(self, timeout: float = 30) -> None:
        """Block until the node reports idle; RuntimeError with the logs otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-N", "-o", "%T", timeout=5).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"node not idle after {timeout:.0f} s (state {state!r})\n{self.logs()}")

    def logs(self) -> str:
        """The tails of both daemon logs."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {name}\n" + "\n".join(text.splitlines()[-20:]))
        return "\n".join(parts)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    """SIGTERM the process we started, then SIGKILL it after GRACE seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _stepds(conf: Path) -> list[int]:
    """PIDs of processes whose environment names CONF: step daemons of this cluster."""
    marker = f"SLURM_CONF={conf}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _reap(conf: Path, grace: float = 5) -> None:
    """Wait for this cluster's leftover processes to exit; SIGKILL those that don't."""
    deadline = time.monotonic() + grace
    while (pids := _stepds(conf)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start slurmctld and slurmd under ROOT; stop them, and anything they left, on exit."""
    node = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(_config(root, node))
    cluster = SlurmCluster(root, conf, node)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv in (
            ["slurmctld", "-D", "-i", "-f", str(conf)],
            ["slurmd", "-D", "-N", node, "-f", str(conf)],
        ):
            procs.append(
                subprocess.Popen(
                    argv,
                    env=cluster.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        cluster.wait_idle()
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)
        _reap(conf)

"""Batch scripts from `hpcopt jobs slurm` run on a real one-node Slurm and log correct results."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, ensure_slurm, slurm_cluster

from hpcopt.slurm import ROOT, kernel_names

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]

CASES = [
    ("srun", "p2p", ["-b", "1K", "-e", "64K", "-f", "4", "-w", "1", "-n", "5", "-c", "1"]),
    ("mpirun", "allreduce", ["-b", "1K", "-e", "64K", "-f", "4", "-w", "1", "-n", "5", "-c", "1"]),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node cluster for this module, installed on demand."""
    reason = ensure_slurm()
    if reason is not None:
        pytest.skip(reason)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _render(cluster: SlurmCluster, out: Path, launcher: str, kernel: str, flags: list[str]) -> Path:
    """Write a batch script with `hpcopt jobs slurm` and return its path."""
    script = out / f"{kernel}.sh"
    argv = [sys.executable, "-m", "hpcopt.cli", "jobs", "slurm", "--nodes", "1"]
    argv += ["--ntasks-per-node", "2", "--time", "2:00", "--partition", cluster.partition]
    argv += ["--output-dir", str(out), "--launcher", launcher, "--env", "MPIEXEC_TIMEOUT=60"]
    argv += ["-o", str(script), "--", kernel, *flags, "--tag", f"slurm-{launcher}"]
    subprocess.run(argv, check=True, timeout=30, cwd=ROOT)
    return script


@pytest.mark.parametrize(("launcher", "kernel", "flags"), CASES, ids=[c[0] for c in CASES])
def test_batch_job_logs_slurm_metadata(
    cluster: SlurmCluster, tmp_path: Path, launcher: str, kernel: str, flags: list[str]
) -> None:
    """sbatch --wait succeeds; the log holds job id, node list, tasks per node and no errors."""
    if kernel not in kernel_names():
        pytest.skip(f"kernels/{kernel}.py is not in this tree yet")
    from hpcopt.log import read_log

    script = _render(cluster, tmp_path, launcher, kernel, flags)
    done = cluster.run("sbatch", "--parsable", "--wait", str(script), timeout=120)
    job_id = done.stdout.strip().split(";")[0]
    output = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert done.returncode == 0, f"{done.stderr}\n{output}\n{cluster.logs()}"
    (run,) = read_log(tmp_path / f"{kernel}-{job_id}.h5").runs
    slurm = run.meta["slurm"]
    assert slurm["SLURM_JOB_ID"] == job_id
    assert slurm["SLURM_JOB_NODELIST"] == cluster.node
    assert slurm["SLURM_NTASKS_PER_NODE"] == "2"
    assert int(run.meta["ranks"]) == 2
    assert run.records and all(int(r["wrong"]) == 0 for r in run.records)


def test_standard_sweep_script(cluster: SlurmCluster, tmp_path: Path) -> None:
    """jobs/allreduce_sweep.sbatch runs with allocation flags and extra kernel flags."""
    if "allreduce" not in kernel_names():
        pytest.skip("kernels/allreduce.py is not in this tree yet")
    from hpcopt.log import read_log

    argv = ["sbatch", "--parsable", "--wait", "-N", "1", "--ntasks-per-node", "2", "-t", "2"]
    argv += ["-p", cluster.partition, f"--output={tmp_path}/%j.out", f"--chdir={ROOT}"]
    argv += [str(ROOT / "jobs" / "allreduce_sweep.sbatch"), str(tmp_path)]
    argv += ["-b", "1K", "-e", "16K", "-f", "4", "-n", "5", "-w", "1", "--algo", "native,ring"]
    done = cluster.run(*argv, timeout=120)
    output = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert done.returncode == 0, f"{done.stderr}\n{output}\n{cluster.logs()}"
    job_id = done.stdout.strip().split(";")[0]
    (run,) = read_log(tmp_path / f"allreduce-{job_id}.h5").runs
    assert run.meta["tag"] == "allreduce-sweep" and run.meta["slurm"]["SLURM_JOB_ID"] == job_id
    assert {r["algo"] for r in run.records} == {"native", "ring"}
    assert all(int(r["wrong"]) == 0 for r in run.records)

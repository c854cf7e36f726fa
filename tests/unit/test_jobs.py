"""`hpcopt jobs slurm` renders the expected batch script and refuses bad parameters in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpcopt.errors import UsageError
from hpcopt.slurm import ROOT, SlurmJob, parse_time, render_slurm

GOLDEN = """\
#!/bin/bash
#SBATCH --job-name=hpcopt-allreduce
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --time=1-02:30
#SBATCH --signal=TERM@300
#SBATCH --partition=gpu
#SBATCH --gpus-per-node=4
#SBATCH --chdir=/scratch/hpcopt
#SBATCH --output=/scratch/hpcopt/runs/%x-%j.out
set -euo pipefail

set +u
module load mpich/4.1
module load cuda/12
set -u
export UCX_TLS=rc,sm,cuda_copy
export MPIR_CVAR_ENABLE_GPU=1
export PYTHONPATH=/scratch/hpcopt${PYTHONPATH:+:$PYTHONPATH}
outdir=runs
mkdir -p -- "$outdir"

srun --mpi=pmix --kill-on-bad-exit=1 /opt/venv/bin/python -m mpi4py kernels/allreduce.py \
--algo all -b 8 -e 256M --device cuda --tag 'ib run' -o "$outdir/allreduce-$SLURM_JOB_ID.h5" || {
    status=$?
    echo "hpcopt: error: kernels/allreduce.py failed with status $status (first error above)" >&2
    exit "$status"
}
""".replace("\\\n", "")

GOOD = ["--nodes", "1", "--ntasks-per-node", "2", "--time", "10", "--partition", "debug"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A work tree with two kernels in kernels/."""
    (tmp_path / "kernels").mkdir()
    for name in ("allreduce", "p2p"):
        (tmp_path / "kernels" / f"{name}.py").write_text("")
    return tmp_path


def _jobs(*argv: str, module: str = "hpcopt.slurm") -> subprocess.CompletedProcess[str]:
    """Run `python -m MODULE [jobs] slurm ARGV` from the repository."""
    prefix = ["jobs"] if module == "hpcopt.cli" else []
    cmd = [sys.executable, "-m", module, *prefix, "slurm", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_golden_script(tree: Path) -> None:
    """Every parameter lands in the script, in a fixed order, quoted where needed."""
    job = SlurmJob(
        nodes=4,
        ntasks_per_node=8,
        time="1-02:30",
        partition="gpu",
        kernel="allreduce",
        kernel_args=(
            "--algo",
            "all",
            "-b",
            "8",
            "-e",
            "256M",
            "--device",
            "cuda",
            "--tag",
            "ib run",
        ),
        output_dir="runs",
        mpi="pmix",
        gpus_per_node=4,
        modules=("mpich/4.1", "cuda/12"),
        env=(("UCX_TLS", "rc,sm,cuda_copy"), ("MPIR_CVAR_ENABLE_GPU", "1")),
        workdir=tree,
        python="/opt/venv/bin/python",
    )
    expected = GOLDEN.replace("/scratch/hpcopt", str(tree))
    assert render_slurm(job) == expected


def test_cli_writes_script_and_output_dir(tree: Path) -> None:
    """-o FILE writes an executable script; mpirun launches; a kernel -o is kept."""
    script = tree / "job.sh"
    argv = [*GOOD, "--workdir", str(tree), "--output-dir", "out", "--launcher", "mpirun"]
    done = _jobs(*argv, "--python", "python3", "-o", str(script), "--", "p2p", "-o", "x.h5")
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert '\nmpirun -n "$SLURM_NTASKS" python3 -m mpi4py kernels/p2p.py -o x.h5 || {\n' in text
    assert "#SBATCH --gpus-per-node" not in text and "module" not in text
    assert script.stat().st_mode & 0o111 and (tree / "out").is_dir()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("5:30", 330),
        ("30:00:00", 108000),
        ("2-12", 216000),
        ("1-00:01", 86460),
        ("0-00:00:01", 1),
    ],
)
def test_time_formats(text: str, seconds: int) -> None:
    """Slurm's six time formats parse to seconds."""
    assert parse_time(text) == seconds


BAD = [
    (["--nodes", "0"], "--nodes must be a positive integer, got 0"),
    (["--nodes", "-2"], "--nodes must be a positive integer, got -2"),
    (["--nodes", "two"], "--nodes 'two': not an integer"),
    (["--ntasks-per-node", "0"], "--ntasks-per-node must be a positive integer"),
    (["--time", "1:2:3:4"], "--time '1:2:3:4': use MM, MM:SS"),
    (["--time", "10:75"], "minutes and seconds < 60"),
    (["--time", "1-25"], "hours < 24 after a day count"),
    (["--time", "0"], "longer than zero"),
    (["--time", "1h"], "--time '1h'"),
    (["--launcher", "aprun"], "--launcher 'aprun': choose one of srun, mpirun"),
    (["--mpi", "pmi1"], "--mpi 'pmi1': choose one of pmi2, pmix"),
    (["--launcher", "mpirun", "--mpi", "pmix"], "--mpi applies to --launcher srun only"),
    (["--env", "NOEQUALS"], "--env 'NOEQUALS': use KEY=VAL"),
    (["--env", "1X=2"], "--env '1X': not a variable name"),
    (["--gpus-per-node", "-1"], "--gpus-per-node must be zero or more"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_parameters(tree: Path, override: list[str], message: str) -> None:
    """Each bad parameter exits 2 with one line on stderr naming it."""
    done = _jobs(*GOOD, "--workdir", str(tree), *override, "allreduce")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr


def test_unknown_kernel_lists_known(tree: Path) -> None:
    """A kernel not in kernels/ is refused and the known ones are listed."""
    done = _jobs(*GOOD, "--workdir", str(tree), "nccl")
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "hpcopt: error: unknown kernel 'nccl' (kernels/ has: allreduce, p2p)"
    )


def test_validation_raises_usage_error(tree: Path) -> None:
    """The library call raises UsageError rather than exiting."""
    job = SlurmJob(
        nodes=1, ntasks_per_node=1, time="5", partition="a b", kernel="p2p", workdir=tree
    )
    with pytest.raises(UsageError, match="give partition names"):
        render_slurm(job)


def test_hpcopt_cli_hookup(tree: Path) -> None:
    """The same errors come through the hpcopt command, one line and exit 2."""
    done = _jobs(*GOOD, "--workdir", str(tree), "--nodes", "0", "p2p", module="hpcopt.cli")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--nodes must be a positive integer" in lines[0]
    ok = _jobs(*GOOD, "--workdir", str(tree), "p2p", "-b", "8", module="hpcopt.cli")
    assert ok.returncode == 0 and "kernels/p2p.py -b 8 -o" in ok.stdout


SCRIPTS = sorted((ROOT / "jobs").glob("*.sh")) + sorted((ROOT / "jobs").glob("*.sbatch"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_parse(script: Path) -> None:
    """Every job script is valid bash with strict mode on."""
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    assert script.name == "common.sh" or "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["workstation.sh", "-n", "0", "p2p"], "-n needs a positive rank count"),
        (["workstation.sh", "nccl"], "unknown kernel 'nccl'"),
        (["interconnect.sh", "ib", "--", "p2p"], "unknown link 'ib'"),
        (["interconnect.sh", "shm", "--", "nccl"], "unknown kernel 'nccl'"),
    ],
)
def test_launcher_errors(argv: list[str], message: str) -> None:
    """The launchers refuse bad arguments with one line and exit 2."""
    done = subprocess.run(
        ["bash", str(ROOT / "jobs" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr

"""Slurm batch scripts for the kernels: validation, rendering and the `hpcopt jobs` command."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcopt.errors import UsageError

__all__ = [
    "ROOT",
    "SlurmJob",
    "add_subparser",
    "kernel_names",
    "main",
    "parse_time",
    "render_slurm",
    "validate",
]

ROOT = Path(__file__).resolve().parent.parent
LAUNCHERS = ("srun", "mpirun")
MPI_PLUGINS = ("pmi2", "pmix")
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One batch job: the allocation, how ranks are launched and the kernel command line."""

    nodes: int
    ntasks_per_node: int
    time: str
    partition: str
    kernel: str
    kernel_args: tuple[str, ...] = ()
    output_dir: str = "results"
    launcher: str = "srun"
    mpi: str = "pmi2"
    gpus_per_node: int = 0
    modules: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: Path = ROOT
    python: str = sys.executable


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise UsageError(f"--time {text!r}: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, first, *rest = match.groups()
    fields = [int(first), *(int(x) for x in rest if x is not None)]
    if days is None:
        hours, minutes, seconds = fields if len(fields) == 3 else [0, *fields, 0][:3]
    else:
        hours, minutes, seconds = [*fields, 0, 0][:3]
    if any(x >= 60 for x in fields[1:]) or (days is not None and hours >= 24):
        raise UsageError(f"--time {text!r}: hours < 24 after a day count, minutes and seconds < 60")
    total = ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise UsageError(f"--time {text!r}: the limit must be longer than zero")
    return total


def kernel_names(workdir: Path = ROOT) -> list[str]:
    """Names of the kernels under WORKDIR/kernels (files NAME.py, not starting with _)."""
    return sorted(p.stem for p in (workdir / "kernels").glob("*.py") if not p.name.startswith("_"))


def _check_kernel(job: SlurmJob) -> None:
    """Refuse a kernel that is not a file in kernels/."""
    known = kernel_names(job.workdir)
    if job.kernel not in known:
        listed = ", ".join(known) or "none found"
        raise UsageError(f"unknown kernel {job.kernel!r} (kernels/ has: {listed})")


def validate(job: SlurmJob) -> None:
    """Raise UsageError, one line, for the first thing wrong in JOB."""
    for name, value in (("--nodes", job.nodes), ("--ntasks-per-node", job.ntasks_per_node)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    if job.gpus_per_node < 0:
        raise UsageError(f"--gpus-per-node must be zero or more, got {job.gpus_per_node}")
    parse_time(job.time)
    if not job.partition or any(c.isspace() for c in job.partition):
        raise UsageError(f"--partition {job.partition!r}: give one partition name")
    if job.launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {job.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    if job.mpi not in MPI_PLUGINS:
        raise UsageError(f"--mpi {job.mpi!r}: choose one of {', '.join(MPI_PLUGINS)}")
    for key, _ in job.env:
        if not _ENV_KEY.fullmatch(key):
            raise UsageError(f"--env {key!r}: not a variable name")
    _check_kernel(job)


def _has_output(args: Sequence[str]) -> bool:
    """Whether the kernel flags already name an output file."""
    return any(a == "--output" or a.startswith(("--output=", "-o")) for a in args)


def _header(job: SlurmJob) -> list[str]:
    """The #SBATCH lines."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=hpcopt-{job.kernel}",
        f"#SBATCH --nodes={job.nodes}",
        f"#SBATCH --ntasks-per-node={job.ntasks_per_node}",
        f"#SBATCH --time={job.time}",
        f"#SBATCH --partition={job.partition}",
    ]
    if job.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    lines += [
        f"#SBATCH --chdir={job.workdir}",
        f"#SBATCH --output={job.output_dir}/%x-%j.out",
    ]
    return lines


def _setup(job: SlurmJob) -> list[str]:
    """Modules, environment and the output folder."""
    lines = ["set -euo pipefail", ""]
    if job.modules:
        # Site module scripts often read unset variables.
        lines += ["set +u", *(f"module load {shlex.quote(m)}" for m in job.modules), "set -u"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in job.env]
    lines += [
        f"export PYTHONPATH={shlex.quote(str(job.workdir))}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"outdir={shlex.quote(job.output_dir)}",
        'mkdir -p "$outdir"',
        "",
    ]
    return lines


def _launch(job: SlurmJob) -> str:
    """The command line that starts the ranks."""
    prefixes = {"srun": f"srun --mpi={job.mpi}", "mpirun": 'mpirun -n "$SLURM_NTASKS"'}
    prefix = prefixes[job.launcher]
    args = " ".join(shlex.quote(a) for a in job.kernel_args)
    command = f"{prefix} {shlex.quote(job.python)} -m mpi4py kernels/{job.kernel}.py"
    if args:
        command += f" {args}"
    if not _has_output(job.kernel_args):
        command += f' -o "$outdir/{job.kernel}-$SLURM_JOB_ID.h5"'
    return command


def render_slurm(job: SlurmJob) -> str:
    """The batch script for JOB, after validating it."""
    validate(job)
    return "\n".join([*_header(job), *_setup(job), _launch(job)]) + "\n"


def _count(flag: str, text: str) -> int:
    """An integer flag value, or a one-line UsageError."""
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not an integer") from None


def _env_pair(text: str) -> tuple[str, str]:
    """KEY=VAL split at the first '='."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--env {text!r}: use KEY=VAL")
    return key, value


def job_from_args(args: argparse.Namespace) -> SlurmJob:
    """A SlurmJob from parsed `jobs slurm` flags."""
    launcher = args.launcher
    if args.mpi is not None and launcher != "srun":
        raise UsageError("--mpi applies to --launcher srun only")
    kernel_args = list(args.kernel_args)
    if kernel_args[:1] == ["--"]:
        kernel_args.pop(0)
    return SlurmJob(
        nodes=_count("--nodes", args.nodes),
        ntasks_per_node=_count("--ntasks-per-node", args.ntasks_per_node),
        time=args.time,
        partition=args.partition,
        kernel=args.kernel.removesuffix(".py").removeprefix("kernels/"),
        kernel_args=tuple(kernel_args),
        output_dir=args.output_dir,
        launcher=launcher,
        mpi=args.mpi or "pmi2",
        gpus_per_node=_count("--gpus-per-node", args.gpus_per_node),
        modules=tuple(args.module),
        env=tuple(_env_pair(e) for e in args.env),
        workdir=Path(args.workdir).resolve(),
        python=args.python,
    )


def _cmd_slurm(args: argparse.Namespace) -> int:
    """Render a batch script to stdout or to -o FILE; create the output folder."""
    job = job_from_args(args)
    text = render_slurm(job)
    (job.workdir / job.output_dir).mkdir(parents=True, exist_ok=True)
    if args.script is None:
        sys.stdout.write(text)
    else:
        Path(args.script).write_text(text)
        Path(args.script).chmod(0o755)
    return 0


def _add_slurm(subparsers: argparse._SubParsersAction) -> None:
    """The `jobs slurm` subcommand."""
    p = subparsers.add_parser(
        "slurm",
        help="render a Slurm batch script for a kernel",
        description="Render a Slurm batch script that runs KERNEL with its flags; the "
        "HDF5 log goes to OUTPUT_DIR/KERNEL-JOBID.h5 unless the flags give -o. "
        "OUTPUT_DIR (relative to --workdir) is created now: Slurm writes the job's "
        "stdout there.",
    )
    p.add_argument("--nodes", "-N", required=True)
    p.add_argument("--ntasks-per-node", required=True)
    p.add_argument("--time", "-t", required=True, help="MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]")
    p.add_argument("--partition", "-p", required=True)
    p.add_argument("--output-dir", default="results")
    p.add_argument("--launcher", default="srun", help="srun (default) or mpirun")
    p.add_argument("--mpi", default=None, help="srun's PMI plugin: pmi2 (default) or pmix")
    p.add_argument("--gpus-per-node", default="0")
    p.add_argument("--module", action="append", default=[], help="module to load (repeat)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VAL", help="(repeat)")
    p.add_argument("--workdir", default=str(ROOT), help="tree with kernels/ (default: %(default)s)")
    p.add_argument("--python", default=sys.executable, help="interpreter on the compute nodes")
    p.add_argument("-o", dest="script", default=None, help="write the script here, not stdout")
    p.add_argument("kernel", help="a kernel in kernels/, e.g. allreduce")
    p.add_argument("kernel_args", nargs=argparse.REMAINDER, help="flags for the kernel")
    p.set_defaults(func=_cmd_slurm)


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `jobs` command and its subcommands to an argparse subparsers object."""
    jobs = subparsers.add_parser("jobs", help="job scripts for clusters")
    inner = jobs.add_subparsers(dest="jobs_command", metavar="{slurm}", required=True)
    _add_slurm(inner)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `jobs ...` on its own: python -m hpcopt.slurm slurm ..."""
    parser = argparse.ArgumentParser(prog="hpcopt")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["jobs", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"hpcopt: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

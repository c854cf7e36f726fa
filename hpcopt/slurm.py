"""Slurm batch scripts for the kernels: validation, rendering and the `hpcopt jobs` command."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import stat
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
    "warning_lead",
]

ROOT = Path(__file__).resolve().parent.parent
LAUNCHERS = ("srun", "mpirun")
MPI_PLUGINS = ("pmi2", "pmix")
_TIME = re.compile(r"(?:([0-9]+)-)?([0-9]+)(?::([0-9]+))?(?::([0-9]+))?")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KERNEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PARTITION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(,[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")
_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+/@:-]*")
# Characters that sbatch reads back unchanged from an unquoted #SBATCH value.
_SBATCH_PLAIN = re.compile(r"[A-Za-z0-9_./:+@%,=-]+")
# Variables that change how bash itself reads and runs the script.
_SHELL_VARS = frozenset(
    {"BASHOPTS", "BASH_ENV", "CDPATH", "ENV", "GLOBIGNORE", "IFS", "PROMPT_COMMAND", "PS4"}
)
_MAX_VALUE = 4096
# Jobs shorter than this get no early signal: SIGTERM at the limit (then SIGKILL after
# Slurm's KillWait) is their warning, and Slurm may send the early one up to 60 s early.
_SIGNAL_MIN_LIMIT = 600
_SIGNAL_MAX_LEAD = 300


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


def _show(value: str) -> str:
    """VALUE quoted on one line for an error message, shortened when long."""
    return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."


def parse_time(text: str) -> int:
    """Seconds in a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise UsageError(
            f"--time {_show(text)}: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
        )
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


def warning_lead(limit: int) -> int | None:
    """Seconds before the limit for Slurm's early SIGTERM: a tenth, at most 5 min; None if short."""
    return None if limit < _SIGNAL_MIN_LIMIT else min(_SIGNAL_MAX_LEAD, limit // 10)


def kernel_names(workdir: Path = ROOT) -> list[str]:
    """Names of the kernels under WORKDIR/kernels (files NAME.py, not starting with _)."""
    names = (p.stem for p in (workdir / "kernels").glob("*.py") if not p.name.startswith("_"))
    return sorted(n for n in names if _KERNEL.fullmatch(n))


def _check_text(flag: str, value: str, *, line: bool = False) -> None:
    """Refuse text the script cannot hold as it is; LINE: no control characters either."""
    if "\0" in value:
        raise UsageError(f"{flag} {_show(value)}: holds a NUL byte")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise UsageError(f"{flag} {_show(value)}: not valid UTF-8") from None
    if line and not value.isprintable():
        raise UsageError(f"{flag} {_show(value)}: control characters (newline, tab ...) refused")
    if line and len(value) > _MAX_VALUE:
        raise UsageError(f"{flag}: longer than {_MAX_VALUE} characters")


def _check_name(flag: str, value: str, pattern: re.Pattern[str], what: str) -> None:
    """Refuse VALUE unless PATTERN matches all of it."""
    if not pattern.fullmatch(value):
        raise UsageError(f"{flag} {_show(value)}: {what}")


def _check_sbatch(flag: str, value: str) -> None:
    """Refuse what sbatch would change in an #SBATCH line: it blanks hetjob and packjob."""
    if re.search("hetjob|packjob", value, re.IGNORECASE):
        raise UsageError(f"{flag} {_show(value)}: sbatch cuts 'hetjob' and 'packjob' out of it")


def _check_kernel(job: SlurmJob) -> None:
    """Refuse a kernel that is not a file in kernels/."""
    known = kernel_names(job.workdir)
    if job.kernel not in known:
        listed = ", ".join(known) or "none found"
        raise UsageError(f"unknown kernel {_show(job.kernel)} (kernels/ has: {listed})")


def _check_paths(job: SlurmJob) -> None:
    """Work folder, output folder and interpreter: printable, and safe where Slurm reads them."""
    _check_text("--workdir", str(job.workdir), line=True)
    _check_text("--output-dir", job.output_dir, line=True)
    if not job.output_dir:
        raise UsageError("--output-dir '': give a folder (. for the work folder)")
    for flag, value in (("--workdir", str(job.workdir)), ("--output-dir", job.output_dir)):
        if "\\" in value:
            raise UsageError(f"{flag} {_show(value)}: a backslash stops Slurm's %j in file names")
        _check_sbatch(flag, value)
    _check_text("--python", job.python, line=True)
    if not job.python or job.python.startswith("-"):
        raise UsageError(f"--python {_show(job.python)}: give the interpreter's path")


def _check_env(env: Sequence[tuple[str, str]]) -> None:
    """Variable names only, each once, none that changes how bash runs the script."""
    seen = set()
    for key, value in env:
        if not _ENV_KEY.fullmatch(key):
            raise UsageError(f"--env {_show(key)}: not a variable name")
        if key in _SHELL_VARS or key.startswith("BASH_"):
            raise UsageError(f"--env {key}: changes how the shell runs the script; refused")
        if key in seen:
            raise UsageError(f"--env {key}: given twice")
        seen.add(key)
        _check_text(f"--env {key}", value)


def validate(job: SlurmJob) -> None:
    """Raise UsageError, one line, for the first thing wrong in JOB."""
    for name, value in (("--nodes", job.nodes), ("--ntasks-per-node", job.ntasks_per_node)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    if job.gpus_per_node < 0:
        raise UsageError(f"--gpus-per-node must be zero or more, got {job.gpus_per_node}")
    parse_time(job.time)
    _check_name("--partition", job.partition, _PARTITION, "give partition names (a,b)")
    _check_sbatch("--partition", job.partition)
    if job.launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {_show(job.launcher)}: choose one of {', '.join(LAUNCHERS)}")
    if job.mpi not in MPI_PLUGINS:
        raise UsageError(f"--mpi {_show(job.mpi)}: choose one of {', '.join(MPI_PLUGINS)}")
    for module in job.modules:
        _check_name("--module", module, _MODULE, "not a module name")
    _check_env(job.env)
    _check_paths(job)
    for arg in job.kernel_args:
        _check_text("kernel flag", arg)
    _check_name("kernel", job.kernel, _KERNEL, "not a kernel name")
    _check_sbatch("kernel", job.kernel)
    _check_kernel(job)


def _has_output(args: Sequence[str]) -> bool:
    """Whether the kernel flags already name an output file."""
    return any(a == "--output" or a.startswith(("--output=", "-o")) for a in args)


def _sbatch_quote(value: str) -> str:
    """VALUE as sbatch's #SBATCH parser reads it back: double quotes, \\ before \\ \" ' #."""
    if _SBATCH_PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r"""([\\"'#])""", r"\\\1", value) + '"'


def _sbatch(option: str, value: str) -> str:
    """One #SBATCH line."""
    return f"#SBATCH --{option}={_sbatch_quote(value)}"


def _output_pattern(job: SlurmJob) -> str:
    """Slurm's --output: absolute, since Slurm expands % in the work folder it would prefix."""
    return os.path.join(job.workdir, job.output_dir).replace("%", "%%") + "/%x-%j.out"


def _outdir(job: SlurmJob) -> str:
    """The output folder as the script names it: ./ before a leading - so it is no option."""
    return f"./{job.output_dir}" if job.output_dir.startswith("-") else job.output_dir


def _header(job: SlurmJob) -> list[str]:
    """The #SBATCH lines."""
    lines = [
        "#!/bin/bash",
        _sbatch("job-name", f"hpcopt-{job.kernel}"),
        f"#SBATCH --nodes={job.nodes}",
        f"#SBATCH --ntasks-per-node={job.ntasks_per_node}",
        f"#SBATCH --time={job.time}",
    ]
    lead = warning_lead(parse_time(job.time))
    if lead is not None:
        lines.append(f"#SBATCH --signal=TERM@{lead}")
    lines.append(_sbatch("partition", job.partition))
    if job.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={job.gpus_per_node}")
    lines += [
        _sbatch("chdir", str(job.workdir)),
        _sbatch("output", _output_pattern(job)),
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
        f"outdir={shlex.quote(_outdir(job))}",
        'mkdir -p -- "$outdir"',
        "",
    ]
    return lines


def _launch(job: SlurmJob) -> list[str]:
    """The command that starts the ranks, and one line naming the status when it fails."""
    prefixes = {
        "srun": f"srun --mpi={job.mpi} --kill-on-bad-exit=1",
        "mpirun": 'mpirun -n "$SLURM_NTASKS"',
    }
    script = f"kernels/{job.kernel}.py"
    words = [shlex.quote(job.python), "-m", "mpi4py", script, *map(shlex.quote, job.kernel_args)]
    command = f"{prefixes[job.launcher]} {' '.join(words)}"
    if not _has_output(job.kernel_args):
        command += f' -o "$outdir/{job.kernel}-$SLURM_JOB_ID.h5"'
    reason = f"hpcopt: error: {script} failed with status $status (first error above)"
    return [
        f"{command} || {{",
        "    status=$?",
        f'    echo "{reason}" >&2',
        '    exit "$status"',
        "}",
    ]


def render_slurm(job: SlurmJob) -> str:
    """The batch script for JOB, after validating it."""
    validate(job)
    return "\n".join([*_header(job), *_setup(job), *_launch(job)]) + "\n"


def _count(flag: str, text: str) -> int:
    """An integer flag value, or a one-line UsageError."""
    if not re.fullmatch(r"-?[0-9]+", text):
        raise UsageError(f"{flag} {_show(text)}: not an integer")
    return int(text)


def _env_pair(text: str) -> tuple[str, str]:
    """KEY=VAL split at the first '='."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--env {_show(text)}: use KEY=VAL")
    return key, value


def _workdir(text: str) -> Path:
    """The --workdir as an absolute path."""
    _check_text("--workdir", text, line=True)
    if not text:
        raise UsageError("--workdir '': give the folder that holds kernels/")
    return Path(text).resolve()


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
        mpi="pmi2" if args.mpi is None else args.mpi,
        gpus_per_node=_count("--gpus-per-node", args.gpus_per_node),
        modules=tuple(args.module),
        env=tuple(_env_pair(e) for e in args.env),
        workdir=_workdir(args.workdir),
        python=args.python,
    )


def _check_target(path: str, overwrite: bool) -> bool:
    """Whether -o PATH exists; refuse it unless it is a regular file and OVERWRITE is set."""
    _check_text("-o", path, line=True)
    if not path:
        raise UsageError("-o '': give a file name")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UsageError(f"-o {_show(path)}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"-o {_show(path)}: exists and is not a regular file; not replaced")
    if not overwrite:
        raise UsageError(f"-o {_show(path)}: exists; --overwrite replaces it")
    return True


def _write_script(path: str, text: str, exists: bool) -> None:
    """Write TEXT to PATH: a new file gets mode 755 (less the umask), an old one keeps its mode."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    flags |= os.O_TRUNC if exists else os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o755)
        with os.fdopen(fd, "wb") as out:
            if not stat.S_ISREG(os.fstat(out.fileno()).st_mode):
                raise UsageError(f"-o {_show(path)}: not a regular file; not written")
            out.write(text.encode())
    except OSError as exc:
        raise UsageError(f"-o {_show(path)}: {exc.strerror}") from None


def _make_outdir(job: SlurmJob) -> None:
    """Create the output folder now: Slurm opens the job's stdout there before the script runs."""
    try:
        (job.workdir / job.output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--output-dir {_show(job.output_dir)}: {exc.strerror}") from None


def _cmd_slurm(args: argparse.Namespace) -> int:
    """Render a batch script to stdout or to -o FILE; create the output folder."""
    job = job_from_args(args)
    text = render_slurm(job)
    exists = args.script is not None and _check_target(args.script, args.overwrite)
    _make_outdir(job)
    if args.script is not None:
        _write_script(args.script, text, exists)
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.buffer.flush()
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
    p.add_argument("--overwrite", action="store_true", help="let -o replace an existing file")
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
    from hpcopt.cli import main as cli_main

    return cli_main(["jobs", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

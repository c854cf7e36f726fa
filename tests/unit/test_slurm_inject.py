"""Rendered Slurm scripts cannot be injected: a hostile value is refused in one line or lands,
unchanged, where it was meant to go, and running the script starts only the intended command."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcopt.cli import build_parser
from hpcopt.errors import UsageError
from hpcopt.slurm import ROOT, job_from_args, render_slurm

# Pieces of shell and sbatch syntax that would run CANARY or bend a line if left unquoted.
HOSTILE = [
    "$(touch CANARY)",
    "`touch CANARY`",
    ";touch CANARY",
    "\ntouch CANARY\n#",
    "'\ntouch CANARY\n'",
    '"; touch CANARY; "',
    "&& touch CANARY",
    "|touch CANARY",
    ">CANARY",
    "${IFS}touch${IFS}CANARY",
    "\r\ntouch CANARY",
    "\\",
    "\\\n",
    "#",
    '"',
    "'",
    "%j",
    "%%",
    "hetjob",
    "PackJob",
    "-o",
    "--prolog=touch",
    "*",
    "~",
    "!!",
    "$HOME",
    "\t",
    "\u2028",
    "\x1b[31m",
    "\x00",
    "\udcff",
    " ",
    "",
    "é",
]
TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=12),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4)), min_size=1, max_size=4).map(
        "".join
    ),
)
OPTIONS = [
    "nodes",
    "ntasks-per-node",
    "time",
    "partition",
    "output-dir",
    "launcher",
    "mpi",
    "gpus-per-node",
    "module",
    "env-key",
    "env-value",
    "workdir",
    "python",
    "kernel",
    "kernel-arg",
]
JOB_ID = "42"


@dataclass
class Case:
    """Flags for one `jobs slurm` call, good except for one hostile value."""

    tree: Path
    flags: dict[str, str] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    kernel: str = "p2p"
    kernel_args: list[str] = field(default_factory=lambda: ["-b", "8"])

    def argv(self) -> list[str]:
        """The command line after `hpcopt`."""
        argv = ["jobs", "slurm"]
        argv += [f"--{name}={value}" for name, value in self.flags.items()]
        argv += [f"--module={m}" for m in self.modules] + [f"--env={e}" for e in self.env]
        return [*argv, "--", self.kernel, *self.kernel_args]


def _creatable(name: str) -> bool:
    """Whether NAME can be one path component on this file system."""
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:
        return False
    return 0 < size < 200 and "/" not in name and "\0" not in name and name not in (".", "..")


def _case(tree: Path, option: str, value: str) -> Case:
    """A good job for TREE with OPTION set to VALUE (creating the folder or kernel it names)."""
    case = Case(tree)
    case.flags = {
        "nodes": "1",
        "ntasks-per-node": "2",
        "time": "30:00",
        "partition": "debug",
        "output-dir": "out",
        "workdir": str(tree),
        "python": "/venv/bin/python",
    }
    if option == "module":
        case.modules = ["mpich/4", value]
    elif option == "env-key":
        case.env = ["UCX_TLS=sm", f"{value}=1"]
    elif option == "env-value":
        case.env = [f"HPCOPT_X={value}"]
    elif option == "kernel-arg":
        case.kernel_args = ["--tag", value, value]
    elif option == "kernel":
        case.kernel = value
        if _creatable(f"{value}.py"):
            (tree / "kernels" / f"{value}.py").write_text("")
    elif option == "workdir" and _creatable(value):
        (tree / value / "kernels").mkdir(parents=True, exist_ok=True)
        (tree / value / "kernels" / "p2p.py").write_text("")
        case.flags["workdir"] = str(tree / value)
    else:
        case.flags[option] = value
    return case


def sbatch_words(text: str, *, old: bool = False) -> list[str]:
    """TEXT split as sbatch splits an #SBATCH line: C whitespace, quotes, backslash, # comment.

    OLD: the parser before Slurm 17.11 (only double quotes; # ends the line even in quotes).
    """
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\n\v\f\r":
            i += 1
        word, quote, escape = [], "", False
        while i < n and (quote or text[i] not in " \t\n\v\f\r"):
            c = text[i]
            i += 1
            if escape:
                escape = False
            elif c == "\\":
                escape = True
                continue
            elif c == "#" and (old or not quote):
                return [*words, "".join(word)] if word else words
            elif quote and c == quote:
                quote = ""
                continue
            elif not quote and (c == '"' or (c == "'" and not old)):
                quote = c
                continue
            word.append(c)
        if not word:
            return words
        words.append("".join(word))


def _sbatch_options(script: str) -> dict[str, str]:
    """The options sbatch reads from the script's #SBATCH lines, checked line by line."""
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    options = {}
    for line in lines[1:]:
        if not line.startswith("#SBATCH"):
            break
        assert line.isprintable() and "hetjob" not in line.lower() and "packjob" not in line.lower()
        (word,) = sbatch_words(line[len("#SBATCH") :])
        assert sbatch_words(line[len("#SBATCH") :], old=True) == [word]
        name, _, value = word.partition("=")
        options[name] = value
    return options


FAKE_TOOL = """#!/bin/bash
printf '%s\\0' "${{0##*/}}" "$@" >> {log}
printf '\\1\\0' >> {log}
[[ ${{0##*/}} == module || ${{0##*/}} == mkdir ]] || /usr/bin/env -0 > {envfile}
"""


def _run_sandboxed(script: str) -> tuple[list[list[str]], dict[str, str], str, Path]:
    """Run SCRIPT with fake srun, mpirun, module and mkdir: their calls, srun's environment,
    the output and the folder it ran in (no other command exists there)."""
    box = Path(tempfile.mkdtemp(prefix="hpcopt-inject-"))
    fake = box / "bin"
    fake.mkdir()
    log, envfile = box / "calls", box / "env"
    for tool in ("srun", "mpirun", "module", "mkdir"):
        (fake / tool).write_text(FAKE_TOOL.format(log=log, envfile=envfile))
        (fake / tool).chmod(0o755)
    handler = box / "bash_env"
    handler.write_text(
        f'command_not_found_handle() {{ echo "UNEXPECTED $1" >> {box}/unexpected; }}\n'
    )
    (box / "job.sh").write_text(script)
    env = {"PATH": str(fake), "BASH_ENV": str(handler), "SLURM_JOB_ID": JOB_ID, "HOME": str(box)}
    env["SLURM_NTASKS"] = "2"
    work = box / "cwd"
    work.mkdir()
    done = subprocess.run(
        ["/bin/bash", str(box / "job.sh")], cwd=work, env=env, capture_output=True, timeout=30
    )
    assert not (box / "unexpected").exists(), (box / "unexpected").read_text()
    raw = log.read_bytes().split(b"\0") if log.exists() else []
    calls, current = [], []
    for item in raw[:-1]:
        if item == b"\1":
            calls.append(current)
            current = []
        else:
            current.append(item.decode())
    seen = dict(e.partition("=")[::2] for e in envfile.read_bytes().decode().split("\0") if e)
    return (
        calls,
        seen,
        (done.stdout + done.stderr).decode(errors="replace") + str(done.returncode),
        box,
    )


def _expected_calls(case: Case, job_env: dict[str, str]) -> list[list[str]]:
    """The commands the rendered script must run, with their exact arguments."""
    outdir = case.flags["output-dir"]
    outdir = f"./{outdir}" if outdir.startswith("-") else outdir
    calls = [["module", "load", m] for m in case.modules] + [["mkdir", "-p", "--", outdir]]
    launcher = case.flags.get("launcher", "srun")
    if launcher == "srun":
        start = ["srun", f"--mpi={case.flags.get('mpi', 'pmi2')}", "--kill-on-bad-exit=1"]
    else:
        start = ["mpirun", "-n", job_env.get("SLURM_NTASKS", "2")]
    command = [*start, case.flags["python"], "-m", "mpi4py", f"kernels/{case.kernel}.py"]
    command += case.kernel_args
    if not any(a == "--output" or a.startswith(("--output=", "-o")) for a in case.kernel_args):
        command += ["-o", f"{outdir}/{case.kernel}-{job_env.get('SLURM_JOB_ID', JOB_ID)}.h5"]
    return [*calls, command]


def _check_script(case: Case, script: str) -> None:
    """Header as meant, valid bash, and only the intended commands when it runs."""
    job = job_from_args(build_parser().parse_args(case.argv()))
    options = _sbatch_options(script)
    outdir = case.flags["output-dir"]
    outdir = f"./{outdir}" if outdir.startswith("-") else outdir
    assert options["--job-name"] == f"hpcopt-{job.kernel}"
    assert options["--partition"] == case.flags["partition"]
    assert options["--time"] == case.flags["time"]
    assert options["--chdir"] == str(job.workdir)
    output = os.path.join(job.workdir, case.flags["output-dir"])
    assert options["--output"] == output.replace("%", "%%") + "/%x-%j.out"
    assert subprocess.run(["bash", "-n"], input=script.encode(), timeout=30).returncode == 0
    env = dict(e.partition("=")[::2] for e in case.env)
    if {"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "POSIXLY_CORRECT"} & env.keys():
        return  # these change which programs run: the user's choice, not an injection
    calls, seen, output, box = _run_sandboxed(script)
    try:
        assert output == "0", output
        assert calls == _expected_calls(case, env)
        assert not list(box.rglob("CANARY*"))
    finally:
        shutil.rmtree(box)
    for key, value in env.items():
        assert seen[key] == value
    pythonpath = str(job.workdir) + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
    assert seen["PYTHONPATH"] == pythonpath


def _render(case: Case) -> str | None:
    """The script for CASE, or None when it is refused (with one line)."""
    try:
        return render_slurm(job_from_args(build_parser().parse_args(case.argv())))
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work tree with kernels/p2p.py."""
    root = tmp_path_factory.mktemp("tree")
    (root / "kernels").mkdir()
    (root / "kernels" / "p2p.py").write_text("")
    return root


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(OPTIONS), value=TEXT, launcher=st.sampled_from(["srun", "mpirun"]))
def test_hostile_values(tree: Path, option: str, value: str, launcher: str) -> None:
    """Any value for any option: refused in one line, or a script that does only what was asked."""
    case = _case(tree, option, value)
    if option != "launcher":
        case.flags["launcher"] = launcher
    script = _render(case)
    if script is not None:
        _check_script(case, script)


@pytest.mark.parametrize("option", OPTIONS, ids=[f"--{o}" for o in OPTIONS])
def test_every_option_reaches_the_script(tree: Path, option: str) -> None:
    """A benign value with spaces and quotes for each option is kept, not refused."""
    value = {
        "nodes": "3",
        "ntasks-per-node": "5",
        "time": "1-00",
        "partition": "gpu,debug",
        "launcher": "mpirun",
        "mpi": "pmix",
        "gpus-per-node": "2",
        "module": "cray-mpich/8.1.28",
        "env-key": "FI_PROVIDER",
        "kernel": "my_kernel-2",
    }.get(option, 'it\'s a "$HOME" `#1` %j')
    case = _case(tree, option, value)
    if option == "mpi":
        case.flags["launcher"] = "srun"
    script = _render(case)
    assert script is not None
    _check_script(case, script)


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `hpcopt jobs slurm ARGV`."""
    cmd = [sys.executable, "-m", "hpcopt.cli", "jobs", "slurm", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


GOOD = ["-N", "1", "--ntasks-per-node", "2", "-t", "10", "-p", "debug"]


def test_newline_in_output_dir_is_refused(tree: Path) -> None:
    """The reproducer: a newline in --output-dir used to start a shell line that ran touch."""
    done = _cli(*GOOD, "--workdir", str(tree), "--output-dir", "res\ntouch /tmp/x\n#", "p2p")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "--output-dir 'res\\ntouch /tmp/x\\n#': control characters" in line
    assert not (tree / "res\ntouch /tmp/x\n#").exists()


def test_empty_output_dir_is_refused(tree: Path) -> None:
    """--output-dir '' would have sent the job's stdout to /%x-%j.out."""
    done = _cli(*GOOD, "--workdir", str(tree), "--output-dir", "", "p2p")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hpcopt: error: --output-dir '': give a folder (. for the work folder)"
    )


def test_script_file_is_created_executable(tree: Path, tmp_path: Path) -> None:
    """A new -o file gets mode 755 less the umask."""
    script = tmp_path / "job.sh"
    done = _cli(*GOOD, "--workdir", str(tree), "-o", str(script), "p2p")
    assert done.returncode == 0, done.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(script.stat().st_mode) == 0o755 & ~umask


def test_existing_file_needs_overwrite_and_keeps_its_mode(tree: Path, tmp_path: Path) -> None:
    """-o onto an existing file refuses; with --overwrite it is replaced and keeps its mode."""
    script = tmp_path / "job.sh"
    script.write_text("mine\n")
    script.chmod(0o600)
    done = _cli(*GOOD, "--workdir", str(tree), "-o", str(script), "p2p")
    assert done.returncode == 2 and "exists; --overwrite replaces it" in done.stderr
    assert script.read_text() == "mine\n"
    done = _cli(*GOOD, "--workdir", str(tree), "-o", str(script), "--overwrite", "p2p")
    assert done.returncode == 0, done.stderr
    assert script.read_text().startswith("#!/bin/bash\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo"])
def test_only_regular_files_are_replaced(tree: Path, tmp_path: Path, kind: str) -> None:
    """-o never replaces a folder, a link (nor its target) or a FIFO, even with --overwrite."""
    target, victim = tmp_path / "target", tmp_path / "victim"
    victim.write_text("keep\n")
    {
        "directory": lambda: target.mkdir(),
        "symlink": lambda: target.symlink_to(victim),
        "fifo": lambda: os.mkfifo(target),
    }[kind]()
    done = _cli(*GOOD, "--workdir", str(tree), "-o", str(target), "--overwrite", "p2p")
    assert done.returncode == 2
    assert "exists and is not a regular file" in done.stderr
    assert victim.read_text() == "keep\n"


def test_hostile_kernel_file_is_not_a_kernel(tmp_path: Path) -> None:
    """A file kernels/NAME.py whose NAME is shell syntax is neither listed nor accepted."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "p2p.py").write_text("")
    (tmp_path / "kernels" / "x$(touch CANARY).py").write_text("")
    done = _cli(*GOOD, "--workdir", str(tmp_path), "x$(touch CANARY)")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("not a kernel name")
    done = _cli(*GOOD, "--workdir", str(tmp_path), "nope")
    assert "(kernels/ has: p2p)" in done.stderr

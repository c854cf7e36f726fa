"""Every shell command in README.md and docs/*.md runs, so that examples cannot rot.

Each ```sh or ```bash block of a page runs in order, in one scratch folder per page that
links to this checkout's kernels/, benchmarks/, jobs/ and tests/data/, with HPCOPT_SMOKE=1
(sizes and iterations shrunk to seconds). A block preceded by
``<!-- doc-test: skip REASON -->`` is not run (cluster commands, root-only emulation,
the quick start that CI itself runs); the reason must be given.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mpirun import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(<!-- doc-test: skip (?P<why>[^>]*)-->\s*\n)?```(?:sh|bash)\n(?P<body>.*?)```", re.S
)
LINKED = ("kernels", "benchmarks", "jobs", "tests")
COMMAND_TIMEOUT_S = 600


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, script, skip reason or None) of each shell block of ``page``."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text[: match.start("body")].count("\n") + 1
        why = match.group("why")
        if why is not None and not why.strip():
            pytest.fail(f"{page.name}:{line}: a skipped block must say why")
        found.append((line, match.group("body"), why.strip() if why else None))
    return found


def _scratch(tmp: Path) -> Path:
    for name in LINKED:
        (tmp / name).symlink_to(ROOT / name)
    return tmp


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_documented_command_runs(page: Path, tmp_path: Path) -> None:
    work = _scratch(tmp_path)
    env = dict(os.environ, HPCOPT_SMOKE="1", MPIEXEC_TIMEOUT="300", PYTHONUNBUFFERED="1",
               HPCOPT_PYTHON=sys.executable)  # fmt: skip
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for line, script, why in blocks(page):
        if why is not None:
            continue
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, text=True,
            capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False,
        )  # fmt: skip
        if proc.returncode != 0 and "install iptables" in proc.stderr:
            pytest.skip(f"{page.name}:{line}: no netem and no iptables here for a link delay")
        assert proc.returncode == 0, (
            f"{page.name}:{line} failed ({proc.returncode}):\n{script}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )

"""compare: records lined up across logs, ratios to the first, verdicts beyond the noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analysis_synth import timed, write_log

from hpcopt.analysis.compare import compare_logs, verdict
from hpcopt.cli import main
from hpcopt.log import read_log


def test_overlapping_ranges_are_no_clear_difference() -> None:
    assert verdict({"a": (1.0, 0.9, 1.1), "b": (1.05, 1.0, 1.2)}) == "no clear difference"


def test_separated_ranges_name_the_faster() -> None:
    assert verdict({"a": (2.0, 1.9, 2.1), "b": (1.0, 0.9, 1.1)}) == "b faster"


def test_three_files_name_the_leading_group_only_when_clear() -> None:
    leaders = {"a": (1.0, 0.9, 1.1), "b": (1.05, 1.0, 1.15), "c": (3.0, 2.9, 3.1)}
    assert verdict(leaders) == "a = b faster"
    blurred = {"a": (1.0, 0.9, 1.1), "b": (1.5, 1.0, 3.0), "c": (3.0, 2.9, 3.1)}
    assert verdict(blurred) == "no clear difference"


def _pair(tmp_path: Path) -> list[Path]:
    fast = [timed("allreduce", "ring", 2, n, t) for n, t in ((8, 1e-4), (64, 6.4e-4))]
    slow = [
        timed("allreduce", "ring", 2, 8, 1.005e-4, spread=0.01),  # overlaps: noise
        timed("allreduce", "ring", 2, 64, 2e-3, spread=0.01),  # 3x slower: clear
        timed("allreduce", "tree", 2, 8, 1e-5),  # only in one file: left out
    ]
    return [
        write_log(tmp_path / "a.h5", [({"tag": "shm", "ranks": 2}, fast)]),
        write_log(tmp_path / "b.h5", [({"tag": "", "ranks": 2}, slow)]),
    ]


def test_compare_lines_up_keys_with_ratios(tmp_path: Path) -> None:
    rows = compare_logs([read_log(p) for p in _pair(tmp_path)])
    assert [(r["algo"], r["size_bytes"]) for r in rows] == [("ring", 8), ("ring", 64)]
    first, second = rows
    assert [f["tag"] for f in first["files"]] == ["shm", "b"]  # no tag: the file stem
    assert first["files"][1]["ratio"] == pytest.approx(1.005)
    assert first["verdict"] == "no clear difference"
    assert second["files"][1]["ratio"] == pytest.approx(3.125)
    assert second["verdict"] == "shm faster"


def test_compare_cli_json_table_and_plot(tmp_path: Path, capsys) -> None:
    a, b = _pair(tmp_path)
    assert main(["compare", str(a), str(b), "--format", "json", "--plot", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]["files"][0]) >= {"tag", "t_avg_s", "t_min_s", "t_max_s", "ratio"}
    assert rows[1]["verdict"] == "shm faster"
    assert (tmp_path / "compare_allreduce.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(a), str(b)]) == 0
    assert "b/shm" in capsys.readouterr().out


def test_same_tags_are_told_apart(tmp_path: Path, capsys) -> None:
    recs = [timed("p2p", "pingpong", 2, 8, 1e-6)]
    paths = [write_log(tmp_path / f"{s}.h5", [({"tag": "tcp", "ranks": 2}, recs)]) for s in "xy"]
    rows = compare_logs([read_log(p) for p in paths])
    assert [f["tag"] for f in rows[0]["files"]] == ["tcp", "tcp (y)"]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: [str(d / "a.h5")], "at least two"),
        (lambda d: [str(d / "a.h5"), str(d / "missing.h5")], "no such file"),
        (lambda d: [str(d / "a.h5"), "--format", "xml"], "invalid choice"),
    ],
)
def test_compare_errors_are_one_line(tmp_path: Path, make, message: str, capsys) -> None:
    _pair(tmp_path)
    assert main(["compare", *make(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

"""compare: records lined up across logs, ratios to the first, verdicts beyond the noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from analysis_synth import timed, write_log

from hpcopt.analysis.compare import compare_logs, verdict
from hpcopt.cli import main
from hpcopt.log import read_log


def noisy_run(rng: np.random.Generator, base: float, iters: int = 100) -> np.ndarray:
    """Per-iteration times like a shared machine's: a run-level drift of up to ±5 %,
    log-normal jitter and 3 % of iterations hit by a 2-10x outlier."""
    drift = rng.uniform(0.95, 1.05)
    times = base * drift * rng.lognormal(0.0, 0.05, iters)
    hit = rng.random(iters) < 0.03
    times[hit] *= rng.uniform(2, 10, hit.sum())
    return times


def test_two_runs_of_one_setup_show_no_clear_difference() -> None:
    rng = np.random.default_rng(1)
    verdicts = [
        verdict({"a": noisy_run(rng, 1e-5), "b": noisy_run(rng, 1e-5)}, seed=k) for k in range(20)
    ]
    assert verdicts.count("no clear difference") >= 19, verdicts


def test_a_real_twenty_percent_difference_is_detected() -> None:
    rng = np.random.default_rng(2)
    verdicts = [
        verdict({"a": noisy_run(rng, 1e-5), "b": noisy_run(rng, 1.2e-5)}, seed=k) for k in range(20)
    ]
    assert sum(v.startswith("a faster") for v in verdicts) >= 19, verdicts


def test_per_rank_means_alone_are_no_verdict_but_points_are_weighed() -> None:
    """A ping-pong's two ranks have near-equal means: that is no evidence. What counts is the
    spread of the iterations, and a file with only a mean counts as that one point."""
    rng = np.random.default_rng(3)
    ours = noisy_run(rng, 1e-5)
    assert verdict({"ours": ours, "theirs": np.array([1.02e-5])}) == "no clear difference"
    assert verdict({"ours": ours, "theirs": np.array([2e-5])}).startswith("ours faster")


def test_three_files_name_the_leading_group() -> None:
    rng = np.random.default_rng(4)
    runs = {"a": noisy_run(rng, 1e-5), "b": noisy_run(rng, 1.02e-5), "c": noisy_run(rng, 3e-5)}
    assert verdict(runs).startswith("a = b faster")


def _with_samples(record: tuple[dict, dict], seed: int) -> tuple[dict, dict]:
    fields, arrays = record
    rng = np.random.default_rng(seed)
    arrays = {**arrays, "times_s": np.stack([noisy_run(rng, fields["t_avg_s"]) for _ in "ab"])}
    return fields, arrays


def _pair(tmp_path: Path) -> list[Path]:
    fast = [
        _with_samples(timed("allreduce", "ring", 2, n, t), i)
        for i, (n, t) in enumerate(((8, 1e-4), (64, 6.4e-4)))
    ]
    slow = [
        _with_samples(timed("allreduce", "ring", 2, 8, 1.005e-4, spread=0.01), 5),  # noise
        _with_samples(timed("allreduce", "ring", 2, 64, 2e-3, spread=0.01), 6),  # 3x: clear
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
    assert second["verdict"].startswith("shm faster")


def test_compare_cli_json_table_and_plot(tmp_path: Path, capsys) -> None:
    a, b = _pair(tmp_path)
    assert main(["compare", str(a), str(b), "--format", "json", "--plot", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]["files"][0]) >= {"tag", "t_avg_s", "t_median_s", "ratio"}
    assert rows[1]["verdict"].startswith("shm faster")
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


def test_compare_lines_up_training_runs(tmp_path: Path, capsys) -> None:
    def train(bits: float, reached: bool) -> tuple[dict, dict]:
        fields = {"kernel": "train", "algo": "sync", "encoder": "topk:ratio=0.01+ef",
                  "problem": "logreg:d=10", "eps": 1e-3, "ranks": 2, "reached": reached,
                  "bits_to_eps": bits if reached else None, "time_to_eps_s": 1.5}  # fmt: skip
        return fields, {}

    a = write_log(tmp_path / "a.h5", [({"tag": "shm", "ranks": 2}, [train(2e6, True)])])
    b = write_log(tmp_path / "b.h5", [({"tag": "tcp", "ranks": 2}, [train(0, False)])])
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "shm bits" in out and "2.000e+06" in out and "tcp bits" in out

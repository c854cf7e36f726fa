"""Imported OSU, IMB and nccl-tests numbers beside an hpcopt run: compare, plots, model fit.

The expected table is built from the sample files' text (fixed line ranges, split on
whitespace) and from our own log, never from the importer's output.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from mpirun import ROOT, run_mpi

from hpcopt.cli import main
from hpcopt.log import merge_logs, read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "import"
SIZES = (4, 8, 16, 32, 64)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny hpcopt log: native and native-oop allreduce, and ping-pong, 4..64 B, 2 ranks."""
    out = tmp_path_factory.mktemp("ours")
    sweep = ["-b", "4", "-e", "64", "-f", "2", "-n", "5", "-w", "1", "--tag", "shm"]
    runs = [
        ("allreduce.py", ["--algo", "native,native-oop", "--dtype", "float32"]),
        ("p2p.py", ["--pattern", "pingpong"]),
    ]
    logs = []
    for script, args in runs:
        log = out / f"{script}.h5"
        proc = run_mpi(ROOT / "kernels" / script, 2, *sweep, *args, "-o", str(log))
        assert proc.returncode == 0, proc.stderr[-2000:]
        logs.append(log)
    return merge_logs(logs, out / "ours.h5")


def sample_rows(name: str, first: int, count: int) -> list[list[str]]:
    """``count`` whitespace-split lines of a sample, from line ``first`` (1-based)."""
    lines = (DATA / name).read_text().split("\n")
    return [line.split() for line in lines[first - 1 : first - 1 + count]]


def expected(name: str) -> dict[tuple[str, str, int], tuple[float, float | None, float | None]]:
    """(kernel, algo, size) → (avg, min, max) in µs, read from the sample text."""
    out: dict[tuple[str, str, int], tuple[float, float | None, float | None]] = {}
    if name == "osu_allreduce_float.txt":  # Size Avg Min Max Iterations, from line 5
        for r in sample_rows(name, 5, 15):
            out["allreduce", "native-oop", int(r[0])] = (float(r[1]), float(r[2]), float(r[3]))
    elif name == "osu_p2p_job.out":  # osu_latency: Size Latency, from line 6
        for r in sample_rows(name, 6, 17):
            out["p2p", "pingpong", int(r[0])] = (float(r[1]), None, None)
    elif name == "imb_mpi1.txt":  # PingPong from line 63; Allreduce (2 processes) from line 139
        for r in sample_rows(name, 63, 6):
            out["p2p", "pingpong", int(r[0])] = (float(r[2]), None, None)
        for r in sample_rows(name, 139, 6):
            out["allreduce", "native-oop", int(r[0])] = (float(r[4]), float(r[2]), float(r[3]))
    else:  # all_reduce_perf.txt: out-of-place time in column 5, in-place in column 9
        for r in sample_rows(name, 13, 19):
            out["allreduce", "native-oop", int(r[0])] = (float(r[5]), None, None)
            out["allreduce", "native", int(r[0])] = (float(r[9]), None, None)
    return out


def table(text: str) -> list[dict[str, str]]:
    lines = text.strip().split("\n")
    head = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(head, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[1:]]


@pytest.mark.parametrize(
    "sample,tag",
    [
        ("osu_allreduce_float.txt", "osu"),
        ("osu_p2p_job.out", "osu"),
        ("imb_mpi1.txt", "imb"),
        ("all_reduce_perf.txt", "nccl"),
    ],
)
def test_compare_prints_the_sources_numbers(
    ours: Path, tmp_path: Path, capsys, sample: str, tag: str
) -> None:
    theirs = tmp_path / "theirs.h5"
    assert main(["import", str(DATA / sample), "-o", str(theirs), "--tag", tag]) == 0
    capsys.readouterr()
    assert main(["compare", str(ours), str(theirs)]) == 0
    rows = table(capsys.readouterr().out)
    log = read_log(ours)
    mine = {(r["kernel"], r["algo"], r["size_bytes"]): r for r in log.records()}
    medians = {
        (r["kernel"], r["algo"], r["size_bytes"]): float(np.median(a["times_s"].max(axis=0)))
        for r, a in zip(log.records(), (a for run in log.runs for a in run.arrays), strict=True)
    }
    want = {k: v for k, v in expected(sample).items() if k in mine}
    got = {(r["kernel"], r["algo"], int(r["size(B)"])): r for r in rows}
    assert set(got) == set(want) and want
    for key, (avg, _, _) in want.items():
        row, rec = got[key], mine[key]
        assert row[f"{tag} avg(us)"] == f"{avg:.2f}"
        assert row["shm avg(us)"] == f"{rec['t_avg_s'] * 1e6:.2f}"
        assert row[f"{tag}/shm"] == f"{avg * 1e-6 / rec['t_avg_s']:.3f}"
        ratio = avg * 1e-6 / medians[key]  # theirs over our median
        verdict = row["verdict"]
        assert verdict == "no clear difference" or verdict.startswith(("shm faster", f"{tag} "))
        if verdict.startswith("shm faster"):  # a verdict never contradicts the medians
            assert ratio > 1.1, row
        elif verdict.startswith(f"{tag} faster"):
            assert ratio < 1 / 1.1, row
        if ratio > 5 or ratio < 1 / 5:  # far apart: a verdict is due
            assert verdict != "no clear difference", row


def test_plots_and_model_fit_across_tools(ours: Path, tmp_path: Path, capsys) -> None:
    osu = tmp_path / "osu.h5"
    files = [str(DATA / n) for n in ("osu_allreduce_float.txt", "osu_p2p_job.out")]
    assert main(["import", files[0], "-o", str(osu), "--ranks", "2"]) == 0
    p2p = tmp_path / "osu_p2p.h5"
    assert main(["import", files[1], "-o", str(p2p)]) == 0
    both = merge_logs([ours, osu, p2p], tmp_path / "both.h5")
    capsys.readouterr()
    assert main(["report", str(both), "--plot", str(tmp_path / "fig")]) == 0
    for name in ("allreduce_time", "allreduce_busbw", "p2p_time", "p2p_bandwidth"):
        assert (tmp_path / "fig" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["model", "fit", str(osu), str(p2p)]) == 0
    out = capsys.readouterr().out
    link = next(line.split() for line in out.split("\n") if line.strip().startswith("osu/pingpong"))
    assert float(link[3]) == pytest.approx(0.21, abs=0.02)  # the sample's latency at 1 B
    assert "osu/native-oop" in out
    assert main(["compare", str(ours), str(osu), "--plot", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare_allreduce.png").exists()


def test_samples_long_form_of_a_kernel_log(ours: Path) -> None:
    log = read_log(ours)
    frame = log.to_dataframe(samples=True)
    shapes = [a["times_s"].shape for run in log.runs for a in run.arrays]
    assert len(frame) == sum(r * i for r, i in shapes)
    first = log.runs[0].arrays[0]["times_s"]
    rows = frame[(frame.run == 0) & (frame.record == 0)].sort_values(["rank", "iteration"])
    assert list(rows.time_s) == pytest.approx(first.ravel().tolist())
    assert set(frame.tag) == {"shm"} and set(frame.kernel) == {"allreduce", "p2p"}

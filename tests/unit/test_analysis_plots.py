"""Figures for every record kind, and table/JSON/CSV exports of compress and train records."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from analysis_synth import compress_runs, model_runs, train_runs, write_log

from hpcopt.analysis.plots import plot_log
from hpcopt.cli import main
from hpcopt.log import read_log

PNG = b"\x89PNG\r\n\x1a\n"
EXPECTED = {
    "allreduce_time", "allreduce_busbw", "allreduce_skew", "p2p_time", "p2p_bandwidth",
    "p2p_skew", "compress_throughput", "compress_ratio", "train_objective_bits",
    "train_objective_time",
}  # fmt: skip


def test_every_kind_gets_its_figures(tmp_path: Path) -> None:
    runs = model_runs(["ring", "tree"], [2], noise=0.0) + compress_runs() + train_runs()
    paths = plot_log(read_log(write_log(tmp_path / "all.h5", runs)), tmp_path / "fig")
    assert {p.stem for p in paths} == EXPECTED
    assert {p.suffix for p in paths} == {".png", ".svg"} and len(paths) == 2 * len(EXPECTED)
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000
        assert data.startswith(PNG) if path.suffix == ".png" else b"<svg" in data[:2000]


def test_kinds_not_present_get_no_figures(tmp_path: Path) -> None:
    log = read_log(write_log(tmp_path / "c.h5", compress_runs()))
    assert {p.stem for p in plot_log(log, tmp_path)} == {"compress_throughput", "compress_ratio"}
    empty = read_log(write_log(tmp_path / "e.h5", [({"tag": "x"}, [])]))
    assert plot_log(empty, tmp_path / "none") == []


def test_report_plot_flag_writes_figures(tmp_path: Path, capsys) -> None:
    path = write_log(tmp_path / "t.h5", train_runs())
    assert main(["report", str(path), "--plot", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "train_objective_bits.png").read_bytes().startswith(PNG)
    assert "wrote" in capsys.readouterr().err


def test_compress_and_train_records_export(tmp_path: Path, capsys) -> None:
    path = write_log(tmp_path / "ct.h5", compress_runs() + train_runs())
    assert main(["report", str(path), "--format", "json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    kinds = {r["kernel"] for r in recs}
    assert kinds == {"compress", "train"}
    compress = next(r for r in recs if r["kernel"] == "compress")
    assert compress["compression_ratio"] == 2.0 and compress["encode_GBps"] == 2.0
    train = next(r for r in recs if r["kernel"] == "train")
    assert train["bits_to_eps"] == 44 * 32e3 and train["reached"] is True
    assert main(["report", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(recs) and {"rel_error", "iters_to_eps"} <= set(rows[0])
    assert main(["report", str(path)]) == 0
    table = capsys.readouterr().out
    assert "# kernel: compress" in table and "# kernel: train" in table and "ratio" in table

"""hpcopt import: OSU, OMB-Py, IMB-MPI1 and nccl-tests outputs become hpcopt records.

Every imported number is checked against the sample's own text, re-read here by line
number and split on whitespace (not by the importer's column logic).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcopt.cli import main
from hpcopt.importers import detect, import_files, parse_file
from hpcopt.importers.common import read_source
from hpcopt.log import read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "import"


def tokens(path: Path, line: int) -> list[str]:
    return path.read_text().split("\n")[line - 1].split()


def column(name: str, rec: dict, i: int) -> float:
    """Column ``i`` of the sample line the record came from."""
    return float(tokens(DATA / name, rec["source_line"])[i])


def imported(tmp_path: Path, name: str, *args: str) -> list[dict]:
    out = tmp_path / f"{name}.h5"
    assert main(["import", str(DATA / name), "-o", str(out), *args]) == 0
    return read_log(out).records()


@pytest.mark.parametrize(
    "name,tool",
    [
        ("osu_allreduce_float.txt", "osu"),
        ("osu_p2p_job.out", "osu"),
        ("ombpy_latency.txt", "osu"),
        ("imb_mpi1.txt", "imb"),
        ("all_reduce_perf.txt", "nccl-tests"),
        ("all_gather_perf.out", "nccl-tests"),
        ("alltoall_perf.json", "nccl-tests"),
    ],
)
def test_auto_detection(name: str, tool: str) -> None:
    assert detect(read_source(DATA / name)) == tool


def test_osu_collective_with_full_columns(tmp_path: Path) -> None:
    recs = imported(tmp_path, "osu_allreduce_float.txt", "--ranks", "2")
    assert [r["size_bytes"] for r in recs] == [4 << i for i in range(15)]
    for r in recs:
        size, avg, lo, hi, iters = tokens(DATA / "osu_allreduce_float.txt", r["source_line"])
        assert r["size_bytes"] == int(size) and r["iters"] == int(iters)
        assert r["t_avg_s"] == pytest.approx(float(avg) * 1e-6)
        assert (r["t_min_s"], r["t_max_s"]) == pytest.approx((float(lo) * 1e-6, float(hi) * 1e-6))
        algbw = r["size_bytes"] / r["t_avg_s"] / 1e9  # allreduce: S = size; 2 ranks: factor 1
        assert r["algbw_GBps"] == pytest.approx(algbw) and r["busbw_GBps"] == pytest.approx(algbw)
        assert r["computed"] == "algbw_GBps,busbw_GBps"
    first = recs[0]
    assert (first["kernel"], first["algo"], first["encoder"]) == ("allreduce", "native-oop", "none")
    assert (first["dtype"], first["source_dtype"], first["op"]) == ("float32", "MPI_FLOAT", "sum")
    assert (first["source_tool"], first["source_tool_version"]) == ("osu", "7.4")
    assert first["ranks"] == 2 and first["tag"] == "osu"


def test_osu_validation_column_and_datatype_blocks(tmp_path: Path) -> None:
    log_path = tmp_path / "v.h5"
    import_files([DATA / "osu_allreduce_validate.txt"], log_path)
    runs = read_log(log_path).runs
    assert [len(r.records) for r in runs] == [5, 3]  # one run per '# Datatype' block
    assert {r["dtype"] for r in runs[0].records} == {"int8"}
    assert {r["dtype"] for r in runs[1].records} == {"int32"}
    assert [r["wrong"] for r in runs[1].records] == [0, 0, 1]
    assert runs[1].records[2]["validation"] == "Fail"
    assert all(r["checked"] for run in runs for r in run.records)
    assert "DATA VALIDATION ERROR" in runs[1].meta["source"]["validation_error"]
    assert "ranks" not in runs[0].meta  # OSU collectives do not state it


def test_osu_point_to_point_patterns(tmp_path: Path) -> None:
    recs = imported(tmp_path, "osu_p2p_job.out")
    by_algo: dict[str, list[dict]] = {}
    for r in recs:
        by_algo.setdefault(r["algo"], []).append(r)
    assert set(by_algo) == {"pingpong", "stream", "bibw", "multi"}
    lat = by_algo["pingpong"][0]
    assert lat["t_avg_s"] == pytest.approx(column("osu_p2p_job.out", lat, 1) * 1e-6)
    assert lat["ranks"] == 2 and lat["dtype"] == "uint8" and "t_min_s" not in lat
    bw = by_algo["stream"][0]  # osu_bw: MB/s (1e6 B/s), no time
    assert "t_avg_s" not in bw
    assert bw["algbw_GBps"] == pytest.approx(column("osu_p2p_job.out", bw, 1) / 1e3)
    mbw = [r for r in by_algo["stream"] if "msg_rate_per_s" in r]
    assert mbw and all(r["ranks"] == 4 for r in mbw)  # [ pairs: 2 ]
    assert all(r["kernel"] == "p2p" for r in recs)


def test_osu_v5_collectives_and_barrier(tmp_path: Path) -> None:
    recs = imported(tmp_path, "osu_collectives_v5.txt", "--ranks", "4")
    kernels = {r["kernel"]: r for r in recs}
    assert set(kernels) == {"allgather", "reduce_scatter", "bcast", "reduce", "alltoall",
                            "gather", "scatter", "barrier"}  # fmt: skip
    barrier = kernels["barrier"]
    assert barrier["size_bytes"] == 0 and "dtype" not in barrier and "algbw_GBps" not in barrier
    assert barrier["t_avg_s"] == pytest.approx(1.87e-6)
    gather = next(r for r in recs if r["kernel"] == "allgather" and r["size_bytes"] == 64)
    # allgather: S = 64 B x 4 ranks; bus factor 3/4
    assert gather["algbw_GBps"] == pytest.approx(256 / gather["t_avg_s"] / 1e9)
    assert gather["busbw_GBps"] == pytest.approx(gather["algbw_GBps"] * 0.75)
    assert kernels["reduce_scatter"]["dtype"] == "float32"  # OSU before 7.1 reduces MPI_FLOAT
    assert kernels["bcast"]["algo"] == "native" and kernels["gather"]["algo"] == "native-oop"


def test_omb_py(tmp_path: Path) -> None:
    lat = imported(tmp_path, "ombpy_latency.txt")
    assert lat[0]["source_tool"] == "omb-py" and lat[0]["size_bytes"] == 0
    assert lat[3]["t_avg_s"] == pytest.approx(column("ombpy_latency.txt", lat[3], 1) * 1e-6)
    red = imported(tmp_path, "ombpy_allreduce.txt")
    assert {r["dtype"] for r in red} == {"float32"} and red[0]["ranks"] is None


def test_imb_sections_per_benchmark_and_process_count(tmp_path: Path, capsys) -> None:
    recs = imported(tmp_path, "imb_mpi1.txt")
    err = capsys.readouterr().err
    assert "Allgatherv" in err  # named as not imported, in one line
    runs = read_log(tmp_path / "imb_mpi1.txt.h5").runs
    assert len(runs) == 26
    names = {(r.meta["source_benchmark"], r.meta["ranks"]) for r in runs}
    assert ("Allreduce", 4) in names and ("PingPong", 2) in names and ("Barrier", 4) in names
    meta = runs[0].meta
    assert meta["source_tool_version"] == "2021.7" and meta["mpi_standard_version"] == "3.1"
    assert meta["source_date"] == "Tue Mar  4 10:12:41 2025"
    assert "IMB-MPI1 -npmin 2" in meta["source"]["command"]
    assert meta["source"]["idle_processes"] == 2
    for r in recs:
        row = tokens(DATA / "imb_mpi1.txt", r["source_line"])
        assert r["iters"] == int(row[0] if r["kernel"] == "barrier" else row[1])
    ar = next(r for r in recs if (r["kernel"], r["ranks"], r["size_bytes"]) == ("allreduce", 4, 64))
    lo, hi, avg = tokens(DATA / "imb_mpi1.txt", ar["source_line"])[2:]
    assert (ar["t_min_s"], ar["t_max_s"], ar["t_avg_s"]) == pytest.approx(
        (float(lo) * 1e-6, float(hi) * 1e-6, float(avg) * 1e-6)
    )
    assert ar["busbw_GBps"] == pytest.approx(64 / ar["t_avg_s"] / 1e9 * 2 * 3 / 4)
    pp = next(r for r in recs if r["algo"] == "pingpong" and r["size_bytes"] == 16)
    assert pp["t_avg_s"] == pytest.approx(column("imb_mpi1.txt", pp, 2) * 1e-6)
    assert pp["dtype"] == "uint8" and pp["source_dtype"] == "MPI_BYTE"


def test_nccl_text_two_records_per_row(tmp_path: Path) -> None:
    recs = imported(tmp_path, "all_reduce_perf.txt")
    assert len(recs) == 2 * 19
    for r in recs:
        row = tokens(DATA / "all_reduce_perf.txt", r["source_line"])
        col = 5 if r["algo"] == "native-oop" else 9
        assert r["t_avg_s"] == pytest.approx(float(row[col]) * 1e-6)
        assert (r["algbw_GBps"], r["busbw_GBps"]) == (float(row[col + 1]), float(row[col + 2]))
        assert r["wrong"] == int(row[col + 3]) and "computed" not in r
        assert r["size_bytes"] == r["source_size_bytes"] == int(row[0])
    meta = read_log(tmp_path / "all_reduce_perf.txt.h5").runs[0].meta
    assert meta["ranks"] == 2 and meta["nccl_version"] == "2.19.3" and meta["device"] == "cuda"
    assert meta["source_tool_version"] == "2.13.9"
    assert meta["hosts"] == ["gpu-a-017", "gpu-a-017"]
    assert meta["source"]["iters"] == 20 and recs[0]["iters"] == 20


def test_nccl_allgather_size_is_divided_by_ranks(tmp_path: Path) -> None:
    recs = imported(tmp_path, "all_gather_perf.out")  # old format: program from the file name
    first = recs[0]
    assert first["kernel"] == "allgather" and first["ranks"] == 4
    assert (first["source_size_bytes"], first["size_bytes"]) == (1024, 256)
    assert "wrong" not in first and first["max_error"] == 0.0  # old 'error' column: a delta


def test_nccl_json(tmp_path: Path) -> None:
    recs = imported(tmp_path, "alltoall_perf.json")
    assert {r["algo"] for r in recs} == {"native", "native-oop"}
    first = recs[0]
    assert (first["source_size_bytes"], first["size_bytes"], first["ranks"]) == (8, 4, 2)
    assert first["busbw_GBps"] == pytest.approx(first["algbw_GBps"] / 2, rel=1e-2)  # as stated
    assert first["source_index"] == 0 and first["iters"] == 20
    meta = read_log(tmp_path / "alltoall_perf.json.h5").runs[0].meta
    assert meta["nccl_version"] == "2.21.5" and meta["hosts"] == ["gpu-b-003", "gpu-b-004"]
    env = meta["source"]["env"]
    assert env["NCCL_IB_HCA"] == "mlx5_0,mlx5_1"
    assert "API_TOKEN" not in env and "HOME" not in env  # only transport variables are kept


def test_tag_and_several_files_in_one_log(tmp_path: Path, capsys) -> None:
    out = tmp_path / "all.h5"
    args = [str(DATA / n) for n in ("osu_allreduce_float.txt", "all_reduce_perf.txt")]
    assert main(["import", *args, "-o", str(out), "--tag", "cluster-a"]) == 0
    printed = capsys.readouterr().out
    assert "2 runs, 53 records" in printed
    log = read_log(out)
    assert {r.meta["tag"] for r in log.runs} == {"cluster-a"}
    assert {r.meta["source_tool"] for r in log.runs} == {"osu", "nccl-tests"}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


OSU_HEAD = "# OSU MPI Allreduce Latency Test v7.4\n# Size       Avg Latency(us)\n"
NCCL_HEAD = "\n".join((DATA / "all_reduce_perf.txt").read_text().split("\n")[:12]) + "\n"
IMB_HEAD = "#    Intel(R) MPI Benchmarks 2021.7, MPI-1 part\n# Benchmarking PingPong\n"
P2P_JOB = (DATA / "osu_p2p_job.out").read_text()
MALFORMED = [
    ("a.txt", OSU_HEAD + "4  1.5\n8  1.6  2.0\n", [], ":4: 3 values where the headings name 2"),
    ("a.txt", OSU_HEAD + "4  1.5\n8  fast\n", [], ":4: avg_us 'fast' is not a number"),
    ("a.txt", OSU_HEAD + "4  1e999\n", [], ":3: avg_us '1e999' is too large"),
    ("a.txt", OSU_HEAD + "99999999999999999999  1\n", [], "size '99999999999999999999' is too"),
    ("a.txt", OSU_HEAD + "srun: error: task 1 died\n", [], ":3: not an OSU result row"),
    ("a.txt", OSU_HEAD.replace("(us)", "(us)  Jitter"), [], ":2: unknown column heading at 'Jit"),
    ("a.txt", "", [], "a.txt: empty file"),
    ("a.txt", "hello\nworld\n", [], "not OSU, IMB or nccl-tests output"),
    ("a.txt", OSU_HEAD + "4  1.5\n", ["--from", "imb"], "no IMB-MPI1 results found"),
    ("a.txt", OSU_HEAD, [], "no OSU Micro-Benchmarks results found"),
    ("a.bin", "\x00\x01binary", [], "a.bin:1: binary data"),
    ("n.txt", NCCL_HEAD + "  4  1  float  sum  -1  10.2  0.00\n", [], ":13: 7 values where"),
    ("n.txt", NCCL_HEAD + "4 1 float sum -1 x 0 0 0 9 0 0 0\n", [], ":13: time 'x' is not a"),
    ("n.json", '{"results": [1, 2\n', [], "n.json:2: not valid JSON"),
    ("n.json", '{"results": [{"size": 8}]}', [], "names no collective"),
    ("n.json", '{"args": ["all_reduce_perf"], "results": [{"size": -8, "type": "float"}]}', [],
     "results[0].size is not a whole number"),
    ("i.txt", IMB_HEAD + " #bytes #repetitions  t[usec] t_huh[usec]\n", [], ":3: unknown IMB col"),
    ("i.txt", IMB_HEAD + " #bytes #repetitions t[usec] Mbytes/sec\n 0 1000 0.2\n", [], ":4: 3 val"),
    ("a.txt", P2P_JOB, ["--ranks", "4"], "states 2 processes, --ranks says 4"),
]  # fmt: skip


@pytest.mark.parametrize("name,text,extra,message", MALFORMED)
def test_malformed_input_is_one_line_with_the_line_number(
    tmp_path: Path, capsys, name: str, text: str, extra: list[str], message: str
) -> None:
    src = _write(tmp_path, name, text)
    out = tmp_path / "out.h5"
    assert main(["import", str(src), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hpcopt: error: ") and message in err, err
    assert str(src) in err
    assert not out.exists() and not Path(f"{out}.partial").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ranks", "0"], "--ranks must be between 1 and"),
        (["--ranks", "two"], "invalid int value"),
        (["--from", "hpl"], "invalid choice"),
    ],
)
def test_bad_flags(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    src = str(DATA / "osu_allreduce_float.txt")
    assert main(["import", src, "-o", str(tmp_path / "o.h5"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_existing_output_and_missing_input(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.h5"
    src = str(DATA / "osu_allreduce_float.txt")
    assert main(["import", src, "-o", str(out)]) == 0
    assert main(["import", src, "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["import", src, "-o", str(out), "--overwrite"]) == 0
    assert main(["import", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "p.h5")]) == 2
    assert "nope.txt: cannot read" in capsys.readouterr().err
    assert main(["import", str(tmp_path), "-o", str(tmp_path / "p.h5")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_noise_outside_tables_is_ignored(tmp_path: Path) -> None:
    text = "+ mpirun -n 2 ./osu_allreduce\nWarning: something\n\n" + OSU_HEAD + "4  1.5\n"
    src = _write(tmp_path, "noisy.txt", text)
    (section,) = parse_file(src).sections
    assert section.records[0]["source_line"] == 6
    info = "host:1:2 [0] NCCL INFO Channel 00/02 : 0 1\n"
    nccl = f"Authorization required\n{NCCL_HEAD}{info}4 1 float sum -1 10.2 0 0 0 9.8 0 0 0\n"
    (section,) = parse_file(_write(tmp_path, "n.txt", nccl)).sections
    assert len(section.records) == 2


def test_osu_tail_latency_columns(tmp_path: Path) -> None:
    head = "# OSU MPI Latency Test v7.4\n# Size  Latency (us)  P50 Tail Lat(us)  P99 Tail Lat(us)\n"
    (section,) = parse_file(_write(tmp_path, "t.txt", head + "8   1.50   1.40   3.25\n")).sections
    rec = section.records[0]
    assert rec["t_avg_s"] == pytest.approx(1.5e-6)
    assert (rec["tail_p50_s"], rec["tail_p99_s"]) == pytest.approx((1.4e-6, 3.25e-6))


def test_nccl_per_iteration_and_timestamp_columns(tmp_path: Path) -> None:
    group = "time algbw busbw #wrong i_min i_max i_p99 i_cv%"
    text = (
        "# Collective test starting: all_reduce_perf\n"
        "#  Rank  0 Group  0 Pid  1 on  h device  0 [0000:18:00] GPU\n"
        "#  Rank  1 Group  0 Pid  2 on  h device  1 [0000:2a:00] GPU\n"
        f"# size count type redop root {group} {group} timestamp\n"
        "1024 256 float sum -1 20.0 0.05 0.05 0 19.0 23.0 22.5 4.1 "
        "18.0 0.06 0.06 N/A 17.5 21.0 20.5 3.9 2025-03-04 11:02:17\n"
    )
    oop, ip = parse_file(_write(tmp_path, "p.txt", text), "nccl-tests").sections[0].records
    assert oop["t_avg_s"] == pytest.approx(20e-6) and ip["t_avg_s"] == pytest.approx(18e-6)
    assert (oop["iter_min_s"], oop["iter_max_s"], oop["t_p99_s"]) == pytest.approx(
        (19e-6, 23e-6, 22.5e-6)
    )
    assert oop["iter_cv_pct"] == 4.1 and oop["wrong"] == 0 and "wrong" not in ip
    assert ip["timestamp"] == "2025-03-04 11:02:17"


@pytest.mark.parametrize("flag,key", [("2", "t_min_s"), ("3", "t_max_s"), ("0", "t_rank0_s")])
def test_nccl_json_average_mode_names_the_time(tmp_path: Path, flag: str, key: str) -> None:
    group = {"time": 12.5, "alg_bw": 0.5, "bus_bw": 0.5, "nwrong": 0}
    doc = {
        "args": ["./all_reduce_perf", "-a", flag],
        "config": {"devices": [{"hostname": "a"}, {"hostname": "b"}]},
        "results": [{"size": 8, "type": "float", "redop": "sum", "root": "-1",
                     "out_of_place": group, "in_place": None}],
    }  # fmt: skip
    path = _write(tmp_path, "a.json", json.dumps(doc))
    (rec,) = parse_file(path).sections[0].records
    assert rec[key] == pytest.approx(12.5e-6) and "t_avg_s" not in rec

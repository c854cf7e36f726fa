"""Fuzzing ``hpcopt import``: random, truncated and garbled text, binary junk, huge numbers.

Whatever the input, the command exits 0 with a readable log, or 2 with exactly one line
naming the file; it never raises.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcopt.cli import main
from hpcopt.log import read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "import"
SAMPLES = sorted(p for p in DATA.iterdir() if p.is_file())
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))

# Tokens that stress the number parsers and the tables' shapes.
NASTY = st.sampled_from(
    ["9" * 30, "1e999", "-1", "nan", "inf", "N/A", "0x10", "1_000", "٣", "1e-320", "", " ",
     "#", "# Size  Avg Latency(us)", "# Benchmarking Allreduce", "# #processes = 0",
     "# [ pairs: 99999999999999999999 ] [ window size: 64 ]", "\t", "\r", "Pass", "Fail",
     "#  Rank 7 Group 0 Pid 1 on h device 0 [0] GPU", "# Datatype: MPI_WEIRD.", "{", "}"]
)  # fmt: skip


def run_import(content: bytes, name: str, *flags: str) -> None:
    """Import ``content``; check the outcome is a clean success or one line and exit 2."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / name, Path(tmp) / "out.h5"
        src.write_bytes(content)
        err, std = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            rc = main(["import", str(src), "-o", str(out), *flags])
        messages = [line for line in err.getvalue().splitlines() if not line.startswith("# ")]
        if rc == 2:
            assert len(messages) == 1 and messages[0].startswith("hpcopt: error: "), messages
            assert not out.exists() and not Path(f"{out}.partial").exists()
            return
        assert rc == 0 and not messages, (rc, messages)
        for rec in read_log(out).records():
            assert isinstance(rec["size_bytes"], int) and rec["size_bytes"] >= 0
            for key in ("t_avg_s", "t_min_s", "t_max_s", "algbw_GBps", "busbw_GBps"):
                assert key not in rec or (math.isfinite(rec[key]) and rec[key] >= 0)


def garble(text: str, data: st.DataObject) -> str:
    """Cut, drop, duplicate or overwrite lines and tokens of a real output."""
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(1, 6))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["cut", "drop", "dup", "token", "nasty", "chars"]))
        if action == "cut":
            cut = data.draw(st.integers(0, len(lines[i])))
            lines = [*lines[:i], lines[i][:cut]]
        elif action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "token":
            words = lines[i].split() or [""]
            j = data.draw(st.integers(0, len(words) - 1))
            words[j] = data.draw(NASTY)
            lines[i] = "  ".join(words)
        elif action == "nasty":
            lines.insert(i, data.draw(NASTY))
        else:
            lines[i] = data.draw(st.text(max_size=40))
    return "\n".join(lines)


@FUZZ
@given(data=st.data(), sample=st.sampled_from(SAMPLES), fmt=st.sampled_from(["auto", "sample"]))
def test_garbled_real_outputs(data: st.DataObject, sample: Path, fmt: str) -> None:
    text = garble(sample.read_text(), data)
    tool = {"osu": "osu", "omb": "osu", "imb": "imb"}.get(sample.name[:3], "nccl-tests")
    flags = ["--from", tool] if fmt == "sample" else []
    run_import(text.encode("utf-8", "surrogatepass"), sample.name, *flags)


@FUZZ
@given(text=st.text(max_size=400), fmt=st.sampled_from(["auto", "osu", "imb", "nccl-tests"]))
def test_random_text(text: str, fmt: str) -> None:
    run_import(text.encode("utf-8", "surrogatepass"), "random.txt", "--from", fmt)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_binary_junk(blob: bytes) -> None:
    run_import(blob, "junk.bin")


SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
RESULT_KEYS = ["size", "count", "type", "redop", "root", "out_of_place", "in_place", "time",
               "alg_bw", "bus_bw", "nwrong", "actual_iterations", "experiment_name"]  # fmt: skip


@FUZZ
@given(
    results=st.lists(st.dictionaries(st.sampled_from(RESULT_KEYS), JSON_VALUES), max_size=4),
    args=st.lists(st.sampled_from(["./all_reduce_perf", "-a", "2", "./gather_perf"]), max_size=3),
    extra=st.dictionaries(st.sampled_from(["config", "env", "nccl_version"]), JSON_VALUES),
)
def test_nccl_json_shapes(results: list, args: list, extra: dict) -> None:
    doc = {"args": args, "results": results, **extra}
    run_import(json.dumps(doc).encode(), "fuzz.json")


@settings(FUZZ, max_examples=15)
@given(ranks=st.sampled_from([-1, 0, 1, 2**31, 2**31 + 1, 2**65]) | st.integers(), tag=st.text())
def test_flag_values(ranks: int, tag: str) -> None:
    text = (DATA / "osu_allreduce_float.txt").read_bytes()
    run_import(text, "osu.txt", "--ranks", str(ranks), "--tag", tag)

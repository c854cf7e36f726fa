"""Fuzzed values of the run-control flags (--timeout, --resume and the sweep bounds) give a
value or one UsageError line, never a traceback; the resume flag comparison ignores only
the flags that may differ."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcopt.bench.program import common_parser, sweep_config
from hpcopt.bench.resume import _read, comparable_flags
from hpcopt.errors import UsageError

PARSER = common_parser("allreduce", None)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def _parse(*argv: str):
    return PARSER.parse_args(list(argv))


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_timeout_values_parse_or_refuse_in_one_line(value: str) -> None:
    try:
        args = _parse("--timeout", value)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(args.timeout) and args.timeout >= 0


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_sweep_bounds_parse_or_refuse_in_one_line(low: str, high: str, factor: str) -> None:
    try:
        cfg = sweep_config(_parse("-b", low, "-e", high, "-f", factor))
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert 1 <= len(cfg.sizes) <= 1000 and cfg.sizes == sorted(cfg.sizes)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2000))
def test_resume_refuses_any_damaged_partial_in_one_line(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("resume") / "x.h5.partial"
    path.write_bytes(data)
    with pytest.raises(UsageError) as err:
        _read(path, "allreduce", "", 2)
    assert "\n" not in str(err.value)


def test_resume_compares_flags_but_not_the_free_ones() -> None:
    then = ["k.py", "-b", "8", "-o", "a.h5", "-q", "--timeout", "5", "--algo", "ring"]
    now = ["k.py", "--resume", "a.h5.partial", "-b", "8", "--timeout=60", "--algo", "ring"]
    assert comparable_flags(then) == comparable_flags(now) == ["-b", "8", "--algo", "ring"]
    assert comparable_flags(["k.py", "-b", "16"]) != comparable_flags(then)


def test_resume_refuses_a_finished_log(tmp_path: Path) -> None:
    from hpcopt.log import LogWriter

    writer = LogWriter(tmp_path / "done.h5")
    writer.start_run({"kernel": "allreduce", "ranks": 2, "tag": ""})
    finished = writer.close()
    with pytest.raises(UsageError, match="not the partial log"):
        _read(finished, "allreduce", "", 2)

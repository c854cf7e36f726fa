"""Other tools' results as hpcopt logs: OSU Micro-Benchmarks, IMB-MPI1 and nccl-tests.

``import_files`` parses every file first (one-line errors naming file and line), then
writes one run per source section through :class:`hpcopt.log.LogWriter`. The record
mapping is in docs/schema.md ("Imported records").
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpcopt.errors import UsageError
from hpcopt.importers.common import MAX_RANKS, Parsed, ParseError, Section, Source, read_source
from hpcopt.importers.imb import looks_like_imb, parse_imb
from hpcopt.importers.nccl import looks_like_nccl, parse_nccl_text
from hpcopt.importers.nccl_json import parse_nccl_json
from hpcopt.importers.osu import looks_like_osu, parse_osu

__all__ = ["FORMATS", "Imported", "ParseError", "detect", "import_files", "parse_file"]

FORMATS = ("osu", "imb", "nccl-tests")


def _parse_nccl(source: Source, ranks: int | None) -> Parsed:
    """nccl-tests' JSON (a document starting with ``{``) or its text."""
    if source.text.lstrip().startswith("{"):
        return parse_nccl_json(source, ranks)
    return parse_nccl_text(source, ranks)


_PARSERS: dict[str, Callable[[Source, int | None], Parsed]] = {
    "osu": parse_osu,
    "imb": parse_imb,
    "nccl-tests": _parse_nccl,
}
_NAMES = {"osu": "OSU Micro-Benchmarks", "imb": "IMB-MPI1", "nccl-tests": "nccl-tests"}
_RANKED = ("allreduce", "allgather", "reduce_scatter", "alltoall", "gather", "scatter")


def detect(source: Source) -> str:
    """Which tool wrote ``source``, from its first telltale line; ParseError if none."""
    if not source.text.strip():
        raise source.error(None, "empty file")
    if source.text.lstrip().startswith("{"):
        return "nccl-tests"
    for line in source.lines:
        text = line.strip()
        if looks_like_osu(text):
            return "osu"
        if looks_like_imb(text):
            return "imb"
        if looks_like_nccl(text):
            return "nccl-tests"
    raise source.error(None, "not OSU, IMB or nccl-tests output (name the tool with --from)")


@dataclass
class Imported:
    """The sections of one parsed file, and notes for the user (skipped benchmarks, ...)."""

    sections: list[Section]
    notes: list[str] = field(default_factory=list)


def parse_file(path: str | Path, fmt: str = "auto", ranks: int | None = None) -> Imported:
    """Parse one file (``fmt``: auto or one of FORMATS); ParseError on malformed input."""
    if fmt != "auto" and fmt not in _PARSERS:
        raise UsageError(f"unknown format {fmt!r}; choose from auto, {', '.join(FORMATS)}")
    source = read_source(path)
    tool = detect(source) if fmt == "auto" else fmt
    parsed = _PARSERS[tool](source, ranks)
    sections = [s for s in parsed.sections if s.records]
    notes = []
    if parsed.skipped:
        names = ", ".join(dict.fromkeys(parsed.skipped))
        notes.append(f"{source.name}: not imported (no hpcopt kernel for them): {names}")
    if not sections:
        raise source.error(None, f"no {_NAMES[tool]} results found")
    unranked = sorted({s.benchmark for s in sections if s.ranks is None and s.kernel in _RANKED})
    if unranked:
        notes.append(
            f"{source.name}: the process count is not stated ({', '.join(unranked)}); "
            "pass --ranks N for busbw and model fits"
        )
    return Imported(sections, notes)


def _meta(section: Section, tag: str | None, argv: Sequence[str]) -> dict[str, Any]:
    """A run's metadata: hpcopt's keys where the source states them, the rest under 'source'."""
    facts = section.facts
    meta: dict[str, Any] = {
        "kernel": section.kernel,
        "tag": section.tool if tag is None else tag,
        "imported": True,
        "argv": list(argv),
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_tool": section.tool,
        "source_tool_version": section.tool_version,
        "source_file": section.file,
        "source_line": section.line,
        "source_benchmark": section.benchmark,
        "source": facts,
    }
    optional = {
        "ranks": section.ranks,
        "device": section.device,
        "hosts": facts.get("hosts"),
        "nccl_version": facts.get("nccl_version"),
        "mpi_standard_version": facts.get("MPI Version"),
        "source_date": facts.get("Date") or facts.get("start_time"),
    }
    meta.update({k: v for k, v in optional.items() if v is not None})
    return meta


def import_files(
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    fmt: str = "auto",
    tag: str | None = None,
    overwrite: bool = False,
    ranks: int | None = None,
) -> tuple[Path, list[Section], list[str]]:
    """Parse ``paths`` and write them as one log; returns (path, sections, notes)."""
    from hpcopt.log import LogWriter, check_output_path, partial_path

    if ranks is not None and not 1 <= ranks <= MAX_RANKS:
        raise UsageError(f"--ranks must be between 1 and {MAX_RANKS}, got {ranks}")
    output = Path(output)
    check_output_path(output, overwrite)
    imported = [parse_file(p, fmt, ranks) for p in paths]
    sections = [s for item in imported for s in item.sections]
    argv = list(sys.argv)
    writer = LogWriter(output, overwrite=overwrite)
    try:
        for section in sections:
            writer.start_run(_meta(section, tag, argv))
            for record in section.records:
                writer.append(record)
        path = writer.close()
    except Exception as exc:  # h5py and the OS raise many kinds; all mean "could not write"
        partial_path(output).unlink(missing_ok=True)
        raise UsageError(f"{output}: cannot write ({exc})") from None
    return path, sections, [n for item in imported for n in item.notes]

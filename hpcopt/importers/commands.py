"""The ``import`` subcommand of ``hpcopt``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_subparser"]

DESCRIPTION = (
    "Read the text output of OSU Micro-Benchmarks (C or OMB-Py), Intel MPI Benchmarks "
    "(IMB-MPI1) or nccl-tests (text, or the JSON of its -J option) into an hpcopt log, "
    "one run per benchmark table, so that report, compare, plots and model fit work on it."
)


def cmd_import(args: argparse.Namespace) -> int:
    """Import the files and say what was written."""
    from hpcopt.importers import import_files

    path, sections, notes = import_files(
        args.files,
        args.output,
        fmt=args.source_format,
        tag=args.tag,
        overwrite=args.overwrite,
        ranks=args.ranks,
    )
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    total = sum(len(s.records) for s in sections)
    print(f"{path}: {len(sections)} runs, {total} records")
    for s in sections:
        sizes = [r["size_bytes"] for r in s.records]
        ranks = f"{s.ranks} ranks" if s.ranks else "ranks not stated"
        where = f"{s.file}:{s.line}" if s.line else s.file
        print(
            f"  {s.tool} {s.benchmark} -> {s.kernel}, {ranks}, {len(s.records)} records, "
            f"{min(sizes)}..{max(sizes)} B  ({where})"
        )
    return 0


def add_subparser(sub: Any) -> None:
    """Register ``import`` on the ``hpcopt`` parser."""
    p = sub.add_parser(
        "import", help="read OSU, IMB or nccl-tests output into a log", description=DESCRIPTION
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="the tools' output files")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="the log to write")
    p.add_argument(
        "--from",
        dest="source_format",
        default="auto",
        choices=("auto", "osu", "imb", "nccl-tests"),
        help="the tool that wrote FILE (default: auto, recognised by its header lines)",
    )
    p.add_argument("--tag", help="label of the imported runs (default: the tool's name)")
    p.add_argument(
        "--ranks",
        type=int,
        metavar="N",
        help="process count for sources that do not state it (OSU collectives, OMB-Py)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT.h5 if it exists")
    p.set_defaults(func=cmd_import)

"""The ``hpcopt`` command: info, suite, report, and the commands of optional modules."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hpcopt.errors import UsageError
from hpcopt.specs import label

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "hpcopt measures what communication costs in distributed optimization: run the main "
    "job (suite), read logs (report, compare, merge, import), fit and predict cost models "
    "(model), render cluster job scripts (jobs), and show the MPI setup (info)."
)

# Modules that add their own subcommands through ``add_subparser(subparsers)``.
PLUGIN_MODULES = ("hpcopt.analysis.commands", "hpcopt.slurm", "hpcopt.importers.commands")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def cmd_info(args: argparse.Namespace) -> int:
    """Print what hpcopt runs on: MPI, thread level, CUDA, versions, parallel HDF5."""
    import h5py

    from hpcopt.backend import cuda_aware_mpi, cupy_or_none
    from hpcopt.launch import find_mpiexec
    from hpcopt.meta import mpi_summary, versions
    from hpcopt.timer import status as c_timer_status

    mpi = mpi_summary()
    cupy = cupy_or_none()
    try:
        mpiexec = find_mpiexec()
    except UsageError as exc:
        mpiexec = f"none ({exc})"
    timer = c_timer_status()
    timer_row = (
        f"yes ({timer.library})"
        if timer.available
        else f"no, Python loop ({timer.reason}; cache {timer.cache})"
    )
    rows = [
        ("MPI library", mpi["mpi_library"]),
        ("MPI standard", mpi["mpi_standard_version"]),
        ("thread level", mpi["thread_level"]),
        ("mpiexec", mpiexec),
        ("C timer", timer_row),
        ("CUDA-aware MPI", "yes" if cuda_aware_mpi() else "no (device buffers staged via host)"),
        ("GPU (CuPy)", "available" if cupy is not None else "not available"),
        ("parallel HDF5", "yes" if h5py.get_config().mpi else "no (rank 0 gathers and writes)"),
    ]
    rows += [(f"{name} version", version) for name, version in versions().items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from hpcopt.suite import suite_main

    return suite_main(args)


def cmd_report(args: argparse.Namespace) -> int:
    """Print a log's records as a table, JSON or CSV."""
    from hpcopt.analysis.report import render, report_records
    from hpcopt.log import read_log

    log = read_log(args.file)
    for problem in log.problems:
        print(f"# skipped {problem}", file=sys.stderr)
    records = report_records(log)
    if log.partial:
        print(
            f"# {args.file}: partial log (the run did not finish); {len(records)} completed "
            "records",
            file=sys.stderr,
        )
    print(render(records, args.format))
    plot_dir = getattr(args, "plot", None)
    if plot_dir:
        from hpcopt.analysis.plots import plot_log

        for path in plot_log(log, Path(plot_dir)):
            print(f"# wrote {path}", file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Copy the runs of several logs into one new log."""
    from hpcopt.log import merge_logs

    print(merge_logs(args.inputs, args.output, overwrite=args.overwrite))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = _Parser(prog="hpcopt", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("info", help="MPI, CUDA and library facts").set_defaults(func=cmd_info)

    suite = sub.add_parser("suite", help="run the default kernels and summarize")
    add = suite.add_argument
    add("--np", type=int, default=None,
        help="ranks for the allreduce sweep (default: one per core, 2 to 4)")  # fmt: skip
    suite.add_argument("-e", "--maxbytes", default="16M", help="largest size (default 16M)")
    suite.add_argument("-o", "--output", help="log path (default results/TIMESTAMP.h5)")
    suite.add_argument(
        "--tag", default="", type=label, help="label of this setup, e.g. shm or ib (default none)"
    )
    add("--overwrite", action="store_true",
        help="replace an existing log (a regular file) once the suite is done")  # fmt: skip
    suite.set_defaults(func=cmd_suite)

    report = sub.add_parser("report", help="print a log as a table, JSON or CSV")
    report.add_argument("file", help="an .h5 log (or .h5.partial of a killed run)")
    report.add_argument("--format", default="table", choices=("table", "json", "csv"),
                        help="table (default), json (a list of records) or csv")  # fmt: skip
    report.add_argument("--plot", metavar="DIR", help="also write PNG and SVG figures to DIR")
    report.set_defaults(func=cmd_report)

    merge = sub.add_parser("merge", help="copy the runs of several logs into one")
    merge.add_argument("output", help="the new log")
    merge.add_argument("inputs", nargs="+", help="logs to copy, in order")
    merge.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing output (a regular file, never an input)",
    )  # fmt: skip
    merge.set_defaults(func=cmd_merge)

    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
            continue
        module.add_subparser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 2 with one line on stderr for any bad input."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        print(f"hpcopt: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("hpcopt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

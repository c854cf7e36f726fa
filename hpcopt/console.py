"""The table a kernel prints on rank 0 while it runs (nccl-tests/OSU style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "COMPRESS_COLUMNS", "Table", "columns_for", "format_row"]

# (header, record field, format); times are printed in microseconds.
Column = tuple[str, str, str]
COLUMNS: tuple[Column, ...] = (
    ("size(B)", "size_bytes", "{:>12d}"),
    ("algo", "algo", "{:<20s}"),
    ("encoder", "encoder", "{:<12s}"),
    ("iters", "iters", "{:>6d}"),
    ("avg(us)", "t_avg_s", "{:>11.2f}"),
    ("min(us)", "t_min_s", "{:>11.2f}"),
    ("max(us)", "t_max_s", "{:>11.2f}"),
    ("p50(us)", "t_p50_s", "{:>11.2f}"),
    ("p99(us)", "t_p99_s", "{:>11.2f}"),
    ("algbw(GB/s)", "algbw_GBps", "{:>11.3f}"),
    ("busbw(GB/s)", "busbw_GBps", "{:>11.3f}"),
    ("wire(B)", "wire_bytes", "{:>11d}"),
    ("wrong", "wrong", "{:>6d}"),
)
COMPRESS_COLUMNS: tuple[Column, ...] = (
    ("size(B)", "size_bytes", "{:>12d}"),
    ("encoder", "encoder", "{:<28s}"),
    ("iters", "iters", "{:>6d}"),
    ("enc(us)", "t_avg_s", "{:>11.2f}"),
    ("enc(GB/s)", "encode_GBps", "{:>10.3f}"),
    ("dec(GB/s)", "decode_GBps", "{:>10.3f}"),
    ("wire(B)", "wire_bytes", "{:>11d}"),
    ("ratio", "compression_ratio", "{:>8.1f}"),
    ("rel_err", "rel_error", "{:>9.2e}"),
    ("wrong", "wrong", "{:>6d}"),
)


def _width(fmt: str) -> int:
    spec = fmt.strip("{}").lstrip(":<>^")
    return int(spec.split(".")[0].rstrip("dfs") or 0)


def columns_for(kernel: str) -> tuple[Column, ...]:
    """The columns a kernel's table shows."""
    return COMPRESS_COLUMNS if kernel == "compress" else COLUMNS


def format_row(fields: dict[str, Any], columns: tuple[Column, ...] = COLUMNS) -> str:
    """One record as a table row."""
    cells = []
    for _, key, fmt in columns:
        value = fields.get(key)
        if key.startswith("t_") and value is not None:
            value = value * 1e6
        cells.append(fmt.format(value) if value is not None else "-".rjust(_width(fmt)))
    return " ".join(cells)


class Table:
    """Prints the run's header, a row per record and a closing line."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.columns = columns_for(kernel)

    def header(self, meta: dict[str, Any], device: str) -> None:
        print(f"# hpcopt {self.kernel}: {meta['ranks']} ranks on {meta['nodes']} node(s)")
        print(
            f"# MPI: {meta['mpi_library']} (MPI {meta['mpi_standard_version']}, "
            f"thread level {meta['thread_level']})"
        )
        print(f"# device: {device}; tag: {meta['tag'] or '-'}")
        print(f"# barrier: {meta['barrier_policy']}")
        print(
            "# times: avg/min/max over ranks of each rank's mean; p50/p99 over iterations "
            "of the slowest rank"
        )
        print("# " + " ".join(h.rjust(_width(f)) for h, _, f in self.columns), flush=True)

    def row(self, fields: dict[str, Any]) -> None:
        print("  " + format_row(fields, self.columns), flush=True)

    def footer(self, path: Path, wrong: int) -> None:
        status = "all results correct" if wrong == 0 else f"{wrong} WRONG ELEMENTS"
        print(f"# {status}; log: {path}", flush=True)

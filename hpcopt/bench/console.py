"""The table a kernel prints on rank 0 while it runs (nccl-tests/OSU style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcopt.meta import oversubscription_note
from hpcopt.record import CONSOLE, FIELDS, Column
from hpcopt.specs import plural

__all__ = ["Table", "format_row"]


def _columns(kernel: str) -> tuple[Column, ...]:
    return CONSOLE.get(kernel, CONSOLE["sweep"])


def _pad(text: str, width: int) -> str:
    return text.ljust(-width) if width < 0 else text.rjust(width)


def format_row(fields: dict[str, Any], kernel: str = "sweep") -> str:
    """One record as a fixed-width table row."""
    return " ".join(
        _pad(FIELDS[name].text(fields.get(name)), width) for name, width, _ in _columns(kernel)
    )


class Table:
    """Prints the run's header, a row per record and a closing line."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.columns = _columns(kernel)

    def header(self, meta: dict[str, Any], device: str, notes: tuple[str, ...] = ()) -> None:
        ranks, nodes = plural(meta["ranks"], "rank"), plural(meta["nodes"], "node")
        print(f"# hpcopt {self.kernel}: {ranks} on {nodes}")
        print(
            f"# MPI: {meta['mpi_library']} (MPI {meta['mpi_standard_version']}, "
            f"thread level {meta['thread_level']})"
        )
        print(f"# device: {device}; tag: {meta['tag'] or '(none)'}")
        crowded = oversubscription_note(meta)
        for note in (*([crowded] if crowded else []), *notes):
            print(f"# {note}")
        heads = (header or FIELDS[name].header for name, _, header in self.columns)
        widths = (abs(width) for _, width, _ in self.columns)
        print("# " + " ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)), flush=True)

    def row(self, fields: dict[str, Any]) -> None:
        print("  " + format_row(fields, self.kernel), flush=True)

    def footer(self, path: Path, wrong: int, *, checked: bool = True) -> None:
        if not checked:
            status = "results not checked (-c 0)"
        else:
            status = "all results correct" if wrong == 0 else f"{wrong} WRONG ELEMENTS"
        print(f"# {status}; log: {path}", flush=True)

"""The one schema of a record's fields: type, column header, display format, how per-rank
values combine, and what the field means.

The console table, ``hpcopt report``, the log reader, the suite summary and the train
summary all render records from here, and docs/schema.md describes the same fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONSOLE",
    "FIELDS",
    "REPORT_ORDER",
    "REPORT_TABLE",
    "Field",
    "cell",
    "merge_per_rank",
    "variant",
]


@dataclass(frozen=True)
class Field:
    """One record field. ``fmt`` formats the value times ``scale`` (seconds shown in µs)."""

    name: str
    kind: type
    header: str
    fmt: str = ""
    scale: float = 1.0
    merge: str = "max"  # how values from several ranks combine: "mean" or "max"
    required: bool = False
    doc: str = ""

    def text(self, value: Any) -> str:
        """The value as shown in a table; ``-`` when missing."""
        if value is None or value == "":
            return "-"
        if self.scale != 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = value * self.scale
        try:
            return format(value, self.fmt)
        except (ValueError, TypeError):
            return str(value)


_US = 1e6
FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("kernel", str, "kernel", required=True, doc="the kernel that made the record"),
        Field("tag", str, "tag", doc="the run's --tag, e.g. the interconnect"),
        Field("algo", str, "algo", required=True, doc="algorithm spec, pattern or path"),
        Field("encoder", str, "encoder", required=True, doc="payload encoder spec (+ef)"),
        Field("problem", str, "problem", doc="optimization problem spec (train)"),
        Field("dtype", str, "dtype", doc="element type"),
        Field("size_bytes", int, "size(B)", "d", doc="message size per rank, whole elements"),
        Field("ranks", int, "ranks", "d", doc="number of processes"),
        Field("iters", int, "iters", "d", doc="timed iterations (train: steps run)"),
        Field("t_avg_s", float, "avg(us)", ".2f", _US, "mean", doc="mean over ranks of means"),
        Field("t_min_s", float, "min(us)", ".2f", _US, "mean", doc="min over ranks of means"),
        Field("t_max_s", float, "max(us)", ".2f", _US, "mean", doc="max over ranks of means"),
        Field("t_p50_s", float, "p50(us)", ".2f", _US, "mean", doc="median, slowest rank"),
        Field("t_p99_s", float, "p99(us)", ".2f", _US, "mean", doc="p99, slowest rank"),
        Field("t_encode_s", float, "enc(us)", ".2f", _US, "mean", doc="encode per call"),
        Field("t_communicate_s", float, "comm(us)", ".2f", _US, "mean", doc="MPI per call"),
        Field("t_decode_s", float, "dec(us)", ".2f", _US, "mean", doc="decode per call"),
        Field("algbw_GBps", float, "algbw(GB/s)", ".3f", doc="size_bytes / t_avg_s"),
        Field("busbw_GBps", float, "busbw(GB/s)", ".3f", doc="algbw times the bus factor"),
        Field("wire_bytes", int, "wire(B)", "d", doc="bytes handed to MPI sends per call"),
        Field("wire_bytes_kind", str, "wire kind", doc="nominal or counted (docs/schema.md)"),
        Field("wire_bytes_measured", int, "iface(B)", "d", doc="interface bytes per call"),
        Field("mode", str, "mode", doc="blocking, nonblocking or persistent"),
        Field("timer", str, "timer", doc="c (the C core) or python: who timed the loop"),
        Field("buffers", int, "sets", "d", doc="rotating buffer sets used"),
        Field("root", int, "root", "d", doc="the root of rooted operations"),
        Field("topology", str, "topology", doc="gossip graph of a neighbourhood exchange"),
        Field("degree", int, "degree", "d", doc="neighbours per rank"),
        Field("pairs", int, "pairs", "d", doc="rank pairs of a point-to-point pattern"),
        Field("msg_rate_per_s", float, "msg/s", ".4g", doc="messages per second, all pairs"),
        Field("t_pure_s", float, "pure(us)", ".2f", _US, "mean", doc="nonblocking call alone"),
        Field("t_compute_s", float, "comp(us)", ".2f", _US, "mean", doc="dummy compute alone"),
        Field("overlap_pct", float, "overlap%", ".1f", doc="OSU's overlap of compute and call"),
        Field("compression_ratio", float, "ratio", ".1f", doc="input bytes / wire bytes"),
        Field("rel_error", float, "rel_err", ".2e", doc="relative error against exact"),
        Field("encode_GBps", float, "enc(GB/s)", ".3f", doc="encode throughput of input"),
        Field("decode_GBps", float, "dec(GB/s)", ".3f", doc="decode throughput of output"),
        Field("decode_t_avg_s", float, "dec(us)", ".2f", _US, "mean", doc="decode per call"),
        Field("eps", float, "eps", ".1e", doc="target suboptimality"),
        Field("reached", bool, "reached", doc="whether eps was reached"),
        Field("iters_to_eps", int, "iters", "d", doc="iterations to eps"),
        Field("bits_to_eps", float, "bits", ".3e", doc="bits per rank to eps"),
        Field("time_to_eps_s", float, "time(s)", ".3f", doc="seconds to eps"),
        Field("final_subopt", float, "subopt", ".2e", doc="f(x̄) − f* at the end"),
        Field("fp32_bits", float, "fp32 bits", ".3e", doc="bits of the same messages in fp32"),
        Field("lower_bound_bits", float, "bound bits", ".3e", doc="d(log2 d + log2 1/eps)"),
        Field("reached_eps", bool, "reached", doc="whether eps was reached (as reached)"),
        Field("outcome", str, "outcome", doc="reached, plateau, budget, diverged, running"),
        Field("outcome_note", str, "why", doc="one line: why the run stopped where it did"),
        Field("survey_bound_bits", float, "n-rank bound", ".3e", doc="(n-1)·d·log2 1/eps"),
        Field("uploads", int, "uploads", "d", doc="LAG: gradients sent, over all ranks"),
        Field("staleness_mean", float, "stale avg", ".2f", doc="async: mean staleness"),
        Field("staleness_max", int, "stale max", "d", doc="async: largest staleness"),
        Field("wrong", int, "wrong", "d", doc="wrong elements summed over ranks"),
    )
}

# The order of the fields every report record starts with (JSON and CSV).
REPORT_ORDER = (
    "kernel", "algo", "encoder", "dtype", "size_bytes", "ranks", "t_min_s", "t_avg_s",
    "t_max_s", "t_p50_s", "t_p99_s", "algbw_GBps", "busbw_GBps", "wire_bytes", "wrong", "tag",
)  # fmt: skip

# The columns `hpcopt report` may show (those that some record of a kernel has).
REPORT_TABLE = (
    "tag", "algo", "encoder", "problem", "topology", "mode", "root", "timer", "dtype",
    "size_bytes", "ranks", "t_avg_s", "t_min_s", "t_max_s", "t_p99_s", "busbw_GBps",
    "msg_rate_per_s", "t_pure_s", "t_compute_s", "overlap_pct", "wire_bytes",
    "wire_bytes_measured", "compression_ratio", "rel_error",
    "encode_GBps", "decode_GBps", "eps", "reached", "iters_to_eps", "bits_to_eps",
    "time_to_eps_s", "final_subopt", "wrong",
)  # fmt: skip

# Console columns per kind of kernel: (field, width; negative = left-aligned, header).
Column = tuple[str, int, str]
_SWEEP: tuple[Column, ...] = (
    ("size_bytes", 12, ""), ("algo", -20, ""), ("encoder", -12, ""), ("iters", 6, ""),
    ("t_avg_s", 11, ""), ("t_min_s", 11, ""), ("t_max_s", 11, ""), ("t_p50_s", 11, ""),
    ("t_p99_s", 11, ""), ("algbw_GBps", 11, ""), ("busbw_GBps", 11, ""), ("wire_bytes", 11, ""),
    ("wrong", 6, ""),
)  # fmt: skip
_COMPRESS: tuple[Column, ...] = (
    ("size_bytes", 12, ""), ("encoder", -28, ""), ("iters", 6, ""), ("t_avg_s", 11, "enc(us)"),
    ("encode_GBps", 10, ""), ("decode_GBps", 10, ""), ("wire_bytes", 11, ""),
    ("compression_ratio", 8, ""), ("rel_error", 9, ""), ("wrong", 6, ""),
)  # fmt: skip
_TRAIN: tuple[Column, ...] = (
    ("algo", -8, ""), ("encoder", -24, ""), ("reached", 7, ""), ("iters_to_eps", 7, ""),
    ("bits_to_eps", 10, "bits to eps"), ("fp32_bits", 10, ""), ("lower_bound_bits", 10, ""),
    ("time_to_eps_s", 9, ""), ("final_subopt", 9, ""),
)  # fmt: skip
_OVERLAP: tuple[Column, ...] = (
    ("size_bytes", 12, ""), ("algo", -12, ""), ("iters", 6, ""), ("t_avg_s", 11, "total(us)"),
    ("t_pure_s", 11, ""), ("t_compute_s", 11, ""), ("overlap_pct", 9, ""), ("t_p99_s", 11, ""),
    ("algbw_GBps", 11, ""), ("busbw_GBps", 11, ""), ("wrong", 6, ""),
)  # fmt: skip
_NEIGHBOR: tuple[Column, ...] = (
    ("size_bytes", 12, ""), ("topology", -12, ""), ("degree", 6, ""), ("algo", -8, ""),
    *_SWEEP[3:],
)  # fmt: skip
CONSOLE: dict[str, tuple[Column, ...]] = {
    "sweep": _SWEEP, "compress": _COMPRESS, "train": _TRAIN, "overlap": _OVERLAP,
    "neighbor": _NEIGHBOR,
}  # fmt: skip


def cell(name: str, value: Any) -> str:
    """``value`` of field ``name`` as shown in a table (unknown fields as plain text)."""
    field = FIELDS.get(name)
    return field.text(value) if field is not None else ("-" if value is None else str(value))


def merge_per_rank(per_rank: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the same fields from several ranks by each field's ``merge`` rule."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for values in per_rank for k in values):
        values = [v[key] for v in per_rank if key in v]
        field = FIELDS.get(key)
        if field is not None and field.merge == "mean":
            merged[key] = sum(values) / len(values)
        else:
            merged[key] = max(values)
    return merged


# Fields that make records of the same kernel, algorithm and size different measurements.
VARIANT_FIELDS = ("topology", "mode")


def variant(rec: dict[str, Any]) -> str:
    """What sets a record apart beyond its algorithm (``""`` for a blocking call): the
    topology of a neighbourhood exchange, a nonblocking or persistent mode."""
    parts = [str(rec[f]) for f in VARIANT_FIELDS if rec.get(f) not in (None, "", "blocking")]
    return "/".join(parts)

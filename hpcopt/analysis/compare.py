"""Line up the same measurement across logs, with ratios and a verdict beyond the noise.

Two files' times differ clearly only when their ``[t_min_s, t_max_s]`` ranges (the
spread of per-rank means) do not overlap; a file without that range (imported results
that state only a mean) gets no verdict. With more files, the files whose ranges
overlap the fastest one lead; they are named faster only when every other file's
range lies entirely above all of theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcopt.analysis.text import text_table
from hpcopt.log import Log

__all__ = [
    "KEY_FIELDS",
    "compare_logs",
    "compare_table",
    "file_label",
    "labels_of",
    "plot_compare",
    "verdict",
]

KEY_FIELDS = ("kernel", "algo", "encoder", "dtype", "size_bytes")
NO_DIFFERENCE = "no clear difference"
NO_SPREAD = "no verdict: no spread in"


def file_label(log: Log, taken: Sequence[str] = ()) -> str:
    """The log's first tag, else its file stem; made unique against ``taken``."""
    tag = next((str(r.meta.get("tag")) for r in log.runs if r.meta.get("tag")), "")
    stem = log.path.name.removesuffix(".partial").removesuffix(".h5")
    label = tag or stem
    if label in taken:
        label = f"{label} ({stem})" if tag else f"{label} ({log.path})"
    return label


def verdict(ranges: dict[str, tuple[float, float, float]]) -> str:
    """``ranges``: label → (t_avg, t_min, t_max). Names the clearly faster file(s)."""
    if len(ranges) < 2:
        return NO_DIFFERENCE
    fastest = min(ranges, key=lambda k: ranges[k][0])
    top = ranges[fastest][2]
    leaders = [k for k, (_, lo, _) in ranges.items() if lo <= top]
    rest = [k for k in ranges if k not in leaders]
    if not rest:
        return NO_DIFFERENCE
    ceiling = max(ranges[k][2] for k in leaders)
    if any(ranges[k][1] <= ceiling for k in rest):
        return NO_DIFFERENCE
    return f"{' = '.join(leaders)} faster"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _timed(log: Log) -> dict[tuple, dict[str, Any]]:
    """Records with a mean time (imported ones may state no min and max)."""
    out: dict[tuple, dict[str, Any]] = {}
    for rec in log.records():
        if _number(rec.get("t_avg_s")) is not None:
            out.setdefault(tuple(rec.get(k) for k in KEY_FIELDS), rec)
    return out


def _verdict(files: list[dict[str, Any]]) -> str:
    """:func:`verdict` when every file states its spread; otherwise no verdict."""
    missing = [f["tag"] for f in files if f["t_min_s"] is None or f["t_max_s"] is None]
    if missing:
        return f"{NO_SPREAD} {', '.join(missing)}"
    return verdict({f["tag"]: (f["t_avg_s"], f["t_min_s"], f["t_max_s"]) for f in files})


def compare_logs(logs: Sequence[Log]) -> list[dict[str, Any]]:
    """One record per key measured in at least two files, in the first file's order."""
    labels = labels_of(logs)
    tables = [_timed(log) for log in logs]
    keys = list(dict.fromkeys(k for table in tables for k in table))
    rows = []
    for key in keys:
        present = [(lab, t[key]) for lab, t in zip(labels, tables, strict=True) if key in t]
        if len(present) < 2:
            continue
        first = tables[0].get(key)
        row: dict[str, Any] = dict(zip(KEY_FIELDS, key, strict=True))
        files = []
        for label, rec in present:
            ratio = rec["t_avg_s"] / first["t_avg_s"] if first and first["t_avg_s"] else None
            files.append(
                {
                    "tag": label,
                    "ranks": rec.get("ranks"),
                    "t_avg_s": rec["t_avg_s"],
                    "t_min_s": _number(rec.get("t_min_s")),
                    "t_max_s": _number(rec.get("t_max_s")),
                    "ratio": ratio,
                }
            )
        row["files"] = files
        row["verdict"] = _verdict(files)
        rows.append(row)
    return rows


def compare_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Rows as a text table: avg µs per file, ratio to the first file, verdict."""
    head = ["kernel", "algo", "encoder", "size(B)"]
    for i, label in enumerate(labels):
        head += [f"{label} avg(us)"] + ([f"{label}/{labels[0]}"] if i else [])
    head.append("verdict")
    body = []
    for row in rows:
        by = {f["tag"]: f for f in row["files"]}
        cells = [str(row["kernel"]), str(row["algo"]), str(row["encoder"]), str(row["size_bytes"])]
        for i, label in enumerate(labels):
            f = by.get(label)
            cells.append(f"{f['t_avg_s'] * 1e6:.2f}" if f else "-")
            if i:
                cells.append(f"{f['ratio']:.3f}" if f and f["ratio"] is not None else "-")
        cells.append(row["verdict"])
        body.append(cells)
    return text_table(head, body) if body else "(no measurement appears in two files)"


def labels_of(logs: Sequence[Log]) -> list[str]:
    """Each log's label, unique across ``logs``."""
    labels: list[str] = []
    for log in logs:
        labels.append(file_label(log, labels))
    return labels


def plot_compare(
    rows: Sequence[dict[str, Any]], labels: Sequence[str], out_dir: Path
) -> list[Path]:
    """Per kernel: t_avg vs size, one line per (file, algorithm); returns PNG and SVG paths."""
    from hpcopt.analysis.plots import STYLES, new_figure, save, size_axis

    paths: list[Path] = []
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == kernel]
        fig, (ax,) = new_figure()
        algos = list(dict.fromkeys((r["algo"], r["encoder"]) for r in mine))
        for a, (algo, encoder) in enumerate(algos):
            name = algo if encoder in ("none", None) else f"{algo}/{encoder}"
            for i, label in enumerate(labels):
                pts = sorted(
                    (r["size_bytes"], f["t_avg_s"] * 1e6)
                    for r in mine
                    if (r["algo"], r["encoder"]) == (algo, encoder)
                    for f in r["files"]
                    if f["tag"] == label
                )
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    style = STYLES[i % len(STYLES)]
                    ax.plot(
                        xs,
                        ys,
                        style,
                        color=f"C{a % 10}",
                        marker="o",
                        ms=3,
                        label=f"{name} · {label}",
                    )
        ax.set_yscale("log")
        size_axis(ax, [r["size_bytes"] for r in mine])
        ax.set_ylabel("time (µs, mean over ranks)")
        ax.grid(True, alpha=0.3)
        if len(ax.lines) > 8:  # many series: legend to the right of the axes
            fig.set_size_inches(10.5, 4.8)
            fig.subplots_adjust(right=0.7)
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize="small")
        ax.set_title(f"{kernel}: {' vs '.join(labels)}")
        paths += save(fig, out_dir, f"compare_{kernel}")
    return paths

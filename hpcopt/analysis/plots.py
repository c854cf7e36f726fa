"""Figures of a log (PNG and SVG, headless): one set per kind of record present."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcopt.analysis.fits import records_with_arrays
from hpcopt.errors import UsageError
from hpcopt.log import Log

__all__ = ["new_figure", "plot_log", "save", "size_axis"]

Rec = dict[str, Any]
UNTIMED = ("compress", "train")
STYLES = ("-", "--", ":", "-.")


def new_figure(panels: int = 1) -> tuple[Any, list[Any]]:
    """A figure with ``panels`` side-by-side axes, drawn without a display."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plots need matplotlib: pip install matplotlib") from None

    fig = Figure(figsize=(6.4 * panels if panels > 1 else 7.0, 4.4))
    # Fixed margins: automatic layout engines cost more than the drawing itself.
    fig.subplots_adjust(left=0.1 / panels**0.5, right=0.98, bottom=0.12, top=0.9, wspace=0.22)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` into ``out_dir``; return both paths."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"cannot write plots to {out_dir}: not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{name}.{ext}" for ext in ("png", "svg")]
        for path in paths:
            fig.savefig(path, dpi=100, metadata={"Date": None} if path.suffix == ".svg" else None)
    except OSError as exc:
        raise UsageError(f"cannot write plots to {out_dir}: {exc.strerror or exc}") from None
    return paths


def _short_size(n: float) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g}{unit}"
    return f"{n:g}"


def size_axis(ax: Any, sizes: Sequence[int], label: str = "message size (bytes)") -> None:
    """Log2 x axis with at most ~8 ticks labelled 8, 1K, 1M, ..."""
    ticks = sorted({s for s in sizes if s > 0})
    if not ticks:
        return
    ax.set_xscale("log", base=2)
    stride = max(1, -(-len(ticks) // 8))
    shown = ticks[::stride]
    ax.set_xticks(shown, [_short_size(s) for s in shown])
    ax.minorticks_off()
    ax.set_xlabel(label)


def _title(kernel: str, recs: Sequence[Rec]) -> str:
    ranks = sorted({str(r.get("ranks")) for r in recs if r.get("ranks") is not None})
    tags = sorted({str(r.get("tag")) for r in recs if r.get("tag")})
    title = f"{kernel} · {'/'.join(ranks) or '?'} ranks"
    return f"{title} · tag {', '.join(tags)}" if tags else title


def _series(recs: Sequence[Rec], fields: Sequence[str]) -> dict[str, list[Rec]]:
    """Records grouped by ``fields``; labels name only the fields that vary."""
    keys = [tuple(r.get(f) for f in fields) for r in recs]
    varying = [i for i in range(len(fields)) if len({k[i] for k in keys}) > 1] or [0]
    groups: dict[str, list[Rec]] = defaultdict(list)
    for key, rec in zip(keys, recs, strict=True):
        groups[" ".join(str(key[i]) for i in varying)].append(rec)
    return groups


def _lines(ax: Any, groups: dict[str, list[Rec]], y: Callable[[Rec], float | None]) -> None:
    for i, (label, recs) in enumerate(groups.items()):
        pts = sorted((r["size_bytes"], y(r)) for r in recs if y(r) is not None)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, STYLES[i // 10 % 4], marker="o", ms=3, label=label)


def _scaled(field: str, scale: float = 1.0) -> Callable[[Rec], float | None]:
    def get(rec: Rec) -> float | None:
        value = rec.get(field)
        return value * scale if isinstance(value, (int, float)) and value > 0 else None

    return get


def _finish(
    fig: Any,
    axes: Sequence[Any],
    title: str,
    ylabels: Sequence[str],
    sizes: Sequence[int],
    xlabel: str = "message size (bytes)",
) -> None:
    for ax, ylabel in zip(axes, ylabels, strict=True):
        size_axis(ax, sizes, xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    if axes[0].lines:
        axes[0].legend(fontsize="small")
    fig.suptitle(title)


def _spread(rec: Rec) -> float | None:
    lo, hi = rec.get("t_min_s"), rec.get("t_max_s")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return (hi - lo) * 1e6
    return None


def _timed(kernel: str, recs: list[Rec], out: Path) -> list[Path]:
    """Time, bandwidth and skew figures; each only when some record has its numbers."""
    groups = _series(recs, ("algo", "encoder", "dtype", "tag", "ranks", "topology", "mode"))
    sizes, title, paths = [r["size_bytes"] for r in recs], _title(kernel, recs), []
    bw = "algbw_GBps" if kernel == "p2p" else "busbw_GBps"
    if any(_scaled("t_avg_s")(r) for r in recs):
        fig, (ax,) = new_figure()
        _lines(ax, groups, _scaled("t_avg_s", 1e6))
        ax.set_yscale("log")
        _finish(fig, [ax], f"time per call: {title}", ["time (µs, mean over ranks)"], sizes)
        paths += save(fig, out, f"{kernel}_time")
    if any(_scaled(bw)(r) for r in recs):
        fig, (ax,) = new_figure()
        _lines(ax, groups, _scaled(bw))
        name = "bandwidth" if kernel == "p2p" else "busbw"
        _finish(fig, [ax], f"{name}: {title}", [f"{name} (GB/s)"], sizes)
        paths += save(fig, out, f"{kernel}_{name}")
    overlapped = [r for r in recs if isinstance(r.get("overlap_pct"), (int, float))]
    if overlapped:
        fig, (ax,) = new_figure()
        _lines(ax, _series(overlapped, ("algo", "tag", "ranks", "topology")),
               lambda r: float(r["overlap_pct"]))  # fmt: skip
        ax.set_ylim(0, 105)
        _finish(fig, [ax], f"overlap of compute and call: {title}", ["overlap (%)"], sizes)
        paths += save(fig, out, f"{kernel}_overlap")
    if not any(_spread(r) is not None or _scaled("t_p99_s")(r) for r in recs):
        return paths
    fig, axes = new_figure(2)
    _lines(axes[0], groups, _spread)
    _lines(axes[1], groups, _scaled("t_p99_s", 1e6))
    axes[1].set_yscale("log")
    labels = ["max − min of per-rank means (µs)", "p99 of the slowest rank (µs)"]
    _finish(fig, axes, f"per-rank skew: {title}", labels, sizes)
    return paths + save(fig, out, f"{kernel}_skew")


def _bars(ax: Any, groups: dict[str, list[Rec]], y: Callable[[Rec], float | None]) -> None:
    """One bar per series (its first record), each in its own colour, labelled below."""
    from matplotlib import colormaps

    labels = list(groups)
    cmap = colormaps["tab20" if len(labels) > 10 else "tab10"]
    heights = [y(groups[label][0]) or 0.0 for label in labels]
    ax.bar(range(len(labels)), heights, color=[cmap(i % cmap.N) for i in range(len(labels))])
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize="small")


def _compress_panels(
    recs: list[Rec], out: Path, name: str, title: str, fields: Sequence[str],
    labels: Sequence[str], log_y: bool,
) -> list[Path]:  # fmt: skip
    """Two panels of ``fields`` against size (lines), or per encoder (bars) for one size."""
    groups = _series(recs, ("encoder", "tag", "dtype"))
    sizes = sorted({r["size_bytes"] for r in recs})
    fig, axes = new_figure(2)
    for ax, field, label in zip(axes, fields, labels, strict=True):
        if len(sizes) == 1:
            _bars(ax, groups, _scaled(field))
            ax.set_ylabel(label)
            ax.grid(True, axis="y", alpha=0.3)
        else:
            _lines(ax, groups, _scaled(field))
        if log_y:
            ax.set_yscale("log")
    if len(sizes) == 1:
        fig.subplots_adjust(bottom=0.3)
        fig.suptitle(f"{title} · {_short_size(sizes[0])}B")
    else:
        _finish(fig, axes, title, labels, sizes, "input size (bytes)")
    return save(fig, out, name)


def _compress(recs: list[Rec], out: Path) -> list[Path]:
    title = _title("compress", recs)
    speeds = ("encode (GB/s of input)", "decode (GB/s of output)")
    paths = _compress_panels(recs, out, "compress_throughput", f"encoder throughput: {title}",
                             ("encode_GBps", "decode_GBps"), speeds, False)  # fmt: skip
    labels = ("compression ratio (input / wire bytes)", "relative error ‖x̂ − x‖/‖x‖")
    return paths + _compress_panels(recs, out, "compress_ratio", f"compression: {title}",
                                    ("compression_ratio", "rel_error"), labels, True)  # fmt: skip


def _running(values: np.ndarray) -> np.ndarray:
    """Cumulative totals: kept when already non-decreasing, summed otherwise."""
    values = np.asarray(values, dtype=float).ravel()
    return values if np.all(np.diff(values) >= 0) else np.cumsum(values)


def _train(items: list[tuple[Rec, dict[str, np.ndarray]]], out: Path) -> list[Path]:
    recs = [rec for rec, _ in items]
    varying = _series(recs, ("problem", "tag", "ranks"))
    label_of = {
        id(r): " ".join(filter(None, (f"{r.get('algo')} {r.get('encoder')}", extra)))
        for extra, group in varying.items()
        for r in group
    }
    if len(varying) == 1:  # nothing but algorithm and encoder differs: name those alone
        label_of = {id(r): f"{r.get('algo')} {r.get('encoder')}" for r in recs}
    use_subopt = all("subopt" in arrays for _, arrays in items)
    yname = "suboptimality f(x) − f*" if use_subopt else "objective f(x)"
    paths = []
    for xkey, xlabel, name in (
        ("bits", "bits sent (cumulative)", "bits"),
        ("time_s", "time (s)", "time"),
    ):
        fig, (ax,) = new_figure()
        for i, (rec, arrays) in enumerate(items):
            y = arrays.get("subopt" if use_subopt else "objective")
            x = arrays.get(xkey)
            if y is None or x is None or np.size(x) != np.size(y) or not np.size(x):
                continue
            x, y = _running(x), np.ravel(y).astype(float)
            keep = x > 0 if xkey == "bits" else np.isfinite(x)
            ax.plot(x[keep], y[keep], STYLES[i // 10 % 4], label=label_of[id(rec)])
        ax.set_xscale("log" if xkey == "bits" else "linear")
        if use_subopt:
            ax.set_yscale("log")
        for eps in sorted({r["eps"] for r in recs if isinstance(r.get("eps"), (int, float))}):
            ax.axhline(eps, color="grey", linestyle=":", linewidth=1, label=f"eps = {eps:g}")
        ax.set(
            xlabel=xlabel,
            ylabel=yname,
            title=f"{yname.split()[0]} vs {name}: {_title('train', recs)}",
        )
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
            paths += save(fig, out, f"train_objective_{name}")
    return paths


def plot_log(log: Log, out_dir: Path) -> list[Path]:
    """Write every figure that the log's records allow; return the files written."""
    items = list(records_with_arrays(log))
    by_kernel: dict[str, list[tuple[Rec, dict[str, np.ndarray]]]] = defaultdict(list)
    for rec, arrays in items:
        by_kernel[str(rec.get("kernel"))].append((rec, arrays))
    paths: list[Path] = []
    for kernel, group in by_kernel.items():
        sized = [
            r for r, _ in group if isinstance(r.get("size_bytes"), int) and r["size_bytes"] > 0
        ]
        if kernel == "compress" and sized:
            paths += _compress(sized, out_dir)
        elif kernel == "train":
            paths += _train(group, out_dir)
        elif kernel not in UNTIMED and any(
            _scaled("t_avg_s")(r) or _scaled("algbw_GBps")(r) for r in sized
        ):
            paths += _timed(kernel, sized, out_dir)
    return paths

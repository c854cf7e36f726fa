"""Cost-model fits of a log: Hockney links from p2p, α–β–γ per collective algorithm."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcopt.analysis.model import Fit, coefficients, fit_linear, form_for, forms, predict
from hpcopt.collectives import COLLECTIVES
from hpcopt.log import Log
from hpcopt.record import variant

__all__ = ["STATS", "LogFits", "fit_log", "records_with_arrays", "sample_time"]

STATS = {
    "avg": "t_avg_s: mean over ranks of each rank's mean",
    "p50": "t_p50_s: median over iterations of the slowest rank",
    "min": "fastest iteration of the slowest rank (from times_s), else t_min_s",
}
LINK_KERNELS = ("p2p",)
MODEL_KERNELS = (*COLLECTIVES, "neighbor")


def records_with_arrays(log: Log) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """Every record of :meth:`Log.records` (tag and ranks filled in) with its arrays."""
    arrays = (a for run in log.runs for a in run.arrays)
    return zip(log.records(), arrays, strict=True)


def sample_time(rec: dict[str, Any], arrays: dict[str, np.ndarray], stat: str) -> float | None:
    """The record's time in seconds under ``stat`` (see STATS); None when unusable."""
    value: Any = rec.get(f"t_{stat}_s")
    if stat == "min":
        times = arrays.get("times_s")
        if isinstance(times, np.ndarray) and times.ndim == 2 and times.size:
            value = float(times.max(axis=0).min())
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


GroupKey = tuple[str, str, str, str, str]  # (tag, kernel, algo, encoder, variant)


def _groups(log: Log, kernels: tuple[str, ...], stat: str) -> dict[GroupKey, list]:
    """Samples (ranks, bytes, seconds) per (tag, kernel, algorithm, encoder, variant such as
    a nonblocking mode or a topology): one fit each."""
    groups: dict[GroupKey, list[tuple[int, int, float]]] = defaultdict(list)
    for rec, arrays in records_with_arrays(log):
        if rec.get("kernel") not in kernels:
            continue
        p, n, t = rec.get("ranks"), rec.get("size_bytes"), sample_time(rec, arrays, stat)
        if isinstance(p, int) and isinstance(n, int) and p >= 2 and n > 0 and t is not None:
            key = (str(rec.get("tag") or ""), str(rec["kernel"]), str(rec["algo"]),
                   str(rec.get("encoder") or "none"), variant(rec))  # fmt: skip
            groups[key].append((p, n, t))
    return groups


def _label(tag: str, kernel: str, algo: str, encoder: str, kind: str) -> str:
    name = algo if encoder == "none" else f"{algo}[{encoder}]"
    name = name if kernel in ("allreduce", "p2p") else f"{kernel}:{name}"
    name = f"{name} ({kind})" if kind else name
    return f"{tag}/{name}" if tag else name


def fit_gamma(samples: list[tuple[str, int, int, float]], alpha: float, beta: float) -> float:
    """One γ (s/byte) for (form, ranks, bytes, seconds) samples with α and β fixed."""
    num = den = 0.0
    for form, p, n, t in samples:
        a, b, c = coefficients(form, p, n)
        num += c / t * (t - a * alpha - b * beta) / t
        den += (c / t) ** 2
    return max(num / den, 0.0) if den > 0 else 0.0


@dataclass
class LogFits:
    """Fits of one log: links, free per-algorithm fits and predictions from the links."""

    links: list[Fit]
    algorithms: list[Fit]
    predictions: list[Fit]
    stat: str

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready record per link, algorithm fit and prediction."""
        kinds = (("link", self.links), ("fit", self.algorithms), ("predicted", self.predictions))
        return [
            {"kind": kind, "stat": self.stat, **f.record()} for kind, fits in kinds for f in fits
        ]


def _link_for(links: dict[GroupKey, Fit], tag: str) -> Fit | None:
    return links.get((tag, "p2p", "pingpong", "none", "")) or links.get(
        (tag, "p2p", "stream", "none", "")
    )


def _predicted(
    tag: str, link: Fit, mine: dict[GroupKey, list], gamma_GBps: float | None
) -> list[Fit]:
    """Each uncompressed algorithm of ``tag`` predicted from the link's α and β."""
    if gamma_GBps is not None:
        gamma, how = 1 / (gamma_GBps * 1e9), f"gamma given ({gamma_GBps:g} GB/s)"
    else:
        pooled = [(form_for(k[2], k[1]), *s) for k, pts in mine.items() for s in pts]
        gamma = fit_gamma(pooled, link.alpha_s, link.beta_s or 0.0)
        how = "gamma fitted to all algorithms with alpha, beta fixed"
    note, out = f"alpha, beta from {link.name}; {how}", []
    for key, pts in mine.items():
        form = form_for(key[2], key[1])
        points = [
            (p, n, s, predict(form, p, n, link.alpha_s, link.beta_s or 0.0, gamma))
            for p, n, s in pts
        ]
        has_gamma = gamma if forms()[form].separates_gamma else None
        ranks = sorted({p for p, *_ in pts})
        out.append(Fit(_label(*key), form, ranks, link.alpha_s, link.beta_s, has_gamma,
                       points, note))  # fmt: skip
    return out


def fit_log(log: Log, stat: str = "avg", gamma_GBps: float | None = None) -> LogFits:
    """Fit every p2p link and collective (kernel, algorithm, encoder, variant) of ``log``;
    predict from links.

    Predictions from a link cover uncompressed blocking algorithms only: a compressed one
    also spends time encoding and decoding, which α, β and γ do not describe.
    """
    links = {
        key: fit_linear(_label(*key), form_for(key[2], "p2p"), pts)
        for key, pts in sorted(_groups(log, LINK_KERNELS, stat).items())
        if len({n for _, n, _ in pts}) >= 2
    }
    algo_groups = {
        key: pts
        for key, pts in sorted(_groups(log, MODEL_KERNELS, stat).items())
        if len({(p, n) for p, n, _ in pts}) >= 2
    }
    algorithms = [
        fit_linear(_label(*key), form_for(key[2], key[1]), pts) for key, pts in algo_groups.items()
    ]
    predictions = []
    for tag in sorted({key[0] for key in algo_groups}):
        link = _link_for(links, tag)
        if link is None or link.beta_s is None:
            continue
        mine = {k: pts for k, pts in algo_groups.items() if k[0] == tag and k[3:] == ("none", "")}
        predictions += _predicted(tag, link, mine, gamma_GBps)
    return LogFits(list(links.values()), algorithms, predictions, stat)

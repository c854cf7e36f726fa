"""Synthetic logs for the analysis tests: times from known α, β, γ with seeded noise."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcopt.analysis.model import form_for, predict
from hpcopt.log import LogWriter

ALPHA, BETA, GAMMA = 2e-6, 1 / 5e9, 1 / 8e9
SIZES = [8 << i for i in range(22)]


def write_log(path: Path, runs: Iterable[tuple[dict[str, Any], list[tuple[dict, dict]]]]) -> Path:
    """A closed log with one run per (meta, records) pair."""
    writer = LogWriter(path, overwrite=True)
    for meta, records in runs:
        writer.start_run(meta)
        for fields, arrays in records:
            writer.append(fields, arrays)
    return writer.close()


def timed(kernel: str, algo: str, p: int, n: int, t: float, spread: float = 0.01) -> tuple:
    """One timed record with a ±spread range around t and a (p, 4) times array."""
    fields = {
        "kernel": kernel, "algo": algo, "encoder": "none", "dtype": "float32",
        "size_bytes": n, "ranks": p, "t_avg_s": t, "t_min_s": t * (1 - spread),
        "t_max_s": t * (1 + spread), "t_p50_s": t, "t_p99_s": t * 1.2,
        "algbw_GBps": n / t / 1e9, "busbw_GBps": n / t / 1e9, "wrong": 0,
    }  # fmt: skip
    return fields, {"times_s": np.full((p, 4), t), "wire_bytes_per_rank": np.full(p, n)}


def model_runs(
    algos: Sequence[str],
    ranks: Sequence[int],
    *,
    noise: float = 0.01,
    seed: int = 0,
    tag: str = "syn",
    p2p: bool = True,
) -> list[tuple[dict, list]]:
    """Runs of p2p (pingpong) and allreduce records at every rank count, with noise."""
    rng = np.random.default_rng(seed)

    def jitter(t: float) -> float:
        return t * (1 + noise * rng.standard_normal())

    runs = []
    if p2p:
        recs = [timed("p2p", "pingpong", 2, n, jitter(ALPHA + n * BETA)) for n in SIZES]
        runs.append(({"tag": tag, "ranks": 2, "kernel": "p2p"}, recs))
    for p in ranks:
        recs = [
            timed("allreduce", a, p, n, jitter(predict(form_for(a), p, n, ALPHA, BETA, GAMMA)))
            for a in algos
            for n in SIZES
        ]
        runs.append(({"tag": tag, "ranks": p, "kernel": "allreduce"}, recs))
    return runs


def compress_runs(tag: str = "syn") -> list[tuple[dict, list]]:
    """compress records for a summable and a non-summable encoder at two sizes."""
    recs = []
    for encoder, ratio in (("fp16", 2.0), ("topk:ratio=0.01", 50.0)):
        for n in (1 << 16, 1 << 20):
            fields = {
                "kernel": "compress", "algo": "encode", "encoder": encoder, "dtype": "float32",
                "size_bytes": n, "wire_bytes": int(n / ratio), "compression_ratio": ratio,
                "rel_error": 1e-3 * ratio, "encode_GBps": 2.0, "decode_GBps": 4.0,
            }  # fmt: skip
            recs.append((fields, {}))
    return [({"tag": tag, "ranks": 1, "kernel": "compress"}, recs)]


def train_runs(tag: str = "syn") -> list[tuple[dict, list]]:
    """train records with per-iteration objective, subopt, bits and time arrays."""
    recs = []
    for encoder, bits in (("none", 32e3), ("sign", 1e3)):
        k = np.arange(1, 51)
        subopt = 10.0 * 0.9**k
        fields = {
            "kernel": "train", "algo": "sgd", "encoder": encoder, "problem": "lsq",
            "ranks": 2, "eps": 1e-1, "reached": True, "iters_to_eps": 44,
            "bits_to_eps": 44 * bits, "time_to_eps_s": 0.44, "final_subopt": float(subopt[-1]),
        }  # fmt: skip
        arrays = {"objective": subopt + 1.0, "subopt": subopt, "bits": k * bits, "time_s": k * 0.01}
        recs.append((fields, arrays))
    return [({"tag": tag, "ranks": 2, "kernel": "train"}, recs)]

"""CuPy buffers through the same kernels; skipped where no GPU is usable."""

from __future__ import annotations

from pathlib import Path

import pytest
from mpirun import ROOT, run_mpi

from hpcopt.backend import cupy_or_none
from hpcopt.log import read_log

pytestmark = pytest.mark.skipif(cupy_or_none() is None, reason="no usable GPU/CuPy here")


@pytest.mark.parametrize("aware", ["0", "1"])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_allreduce_on_device_buffers(tmp_path: Path, ranks: int, aware: str, monkeypatch) -> None:
    monkeypatch.setenv("HPCOPT_CUDA_AWARE", aware)
    if aware == "1" and ranks > 1:
        pytest.skip("CUDA-aware path needs an MPI built with CUDA; staged path covers the rest")
    out = tmp_path / "g.h5"
    proc = run_mpi(
        ROOT / "kernels" / "allreduce.py",
        ranks,
        "--device",
        "cuda",
        "-b",
        "0",
        "-e",
        "1M",
        "-f",
        "8",
        "-n",
        "3",
        "-w",
        "1",
        "-q",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    records = read_log(out).records()
    assert records and all(r["wrong"] == 0 and r["device"] == "cuda" for r in records)


def test_p2p_on_device_buffers(tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    proc = run_mpi(
        ROOT / "kernels" / "p2p.py",
        2,
        "--device",
        "cuda",
        "-e",
        "1M",
        "-f",
        "16",
        "-n",
        "3",
        "-w",
        "1",
        "-q",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert all(r["wrong"] == 0 for r in read_log(out).records())


@pytest.mark.parametrize("method", ["allgather", "two-phase", "vote"])
def test_compressed_allreduce_on_device_buffers(tmp_path: Path, method: str) -> None:
    """Compressed paths (fused decode-and-sum on the GPU) at 2 ranks sharing the device."""
    out = tmp_path / "c.h5"
    specs = ["sign"] if method == "vote" else ["qsgd", "topk:ratio=0.01", "natural"]
    proc = run_mpi(
        ROOT / "kernels" / "allreduce.py", 2, "--device", "cuda", "-b", "4K", "-e", "4M",
        "-f", "32", "-n", "3", "-w", "1", "-q", "-o", str(out), "--method", method,
        *(f"--encoder={s}" for s in specs),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = read_log(out).records()
    assert records and all(r["wrong"] == 0 and r["rel_error"] < 2 for r in records)

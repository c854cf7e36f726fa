"""``HPCOPT_SMOKE=1``: every kernel, the suite and the benchmark scripts shrink their work to
seconds, so that the documented commands can be tried (and are tested) quickly. Numbers
from such runs mean nothing; every kernel's header says so."""

from __future__ import annotations

import os

__all__ = ["MAX_BYTES", "NOTE", "active", "shrink"]

MAX_BYTES = 64 << 10
MAX_ITERS = 3
MAX_WARMUP = 1
MAX_TRAIN_ITERS = 20
NOTE = "HPCOPT_SMOKE is set: sizes and iterations shrunk; these numbers mean nothing"


def active() -> bool:
    """Whether the environment asks for smoke runs."""
    return os.environ.get("HPCOPT_SMOKE", "") not in ("", "0")


def shrink(value: int, limit: int) -> int:
    """``value``, capped at ``limit`` in smoke runs."""
    return min(value, limit) if active() else value

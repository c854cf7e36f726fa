"""The C timing core: MPI's own operations timed in a C loop, built on first use.

``status()``/``available()`` say whether it works here; ``time_call(comm, TimedCall(...),
samples, warmup=..., barrier=...)`` fills a samples array. See docs/timer.md.
"""

from __future__ import annotations

from hpcopt.timer.core import (
    BARRIERS,
    MODES,
    Operation,
    TimedCall,
    TimerStatus,
    available,
    buffer_address,
    operation,
    operations,
    overlap_percent,
    status,
    time_call,
)

__all__ = [
    "BARRIERS",
    "MODES",
    "Operation",
    "TimedCall",
    "TimerStatus",
    "available",
    "buffer_address",
    "operation",
    "operations",
    "overlap_percent",
    "status",
    "time_call",
]

"""Run settings that every sweeping kernel shares and the log records: timer, buffers, wire."""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

from hpcopt import timer as ctimer
from hpcopt.bench import wire
from hpcopt.bench.buffers import AUTO, last_level_cache
from hpcopt.bench.harness import SweepConfig
from hpcopt.errors import UsageError
from hpcopt.kernels import THREAD_LEVELS

__all__ = ["THREAD_LEVELS", "check_timer", "run_settings"]


def check_timer(choice: str) -> str:
    """``--timer c`` is refused in one line where the C core does not work here."""
    if choice == "c" and not ctimer.status().available:
        raise UsageError(f"--timer c: the C timer is not available ({ctimer.status().reason})")
    return choice


def run_settings(comm: MPI.Comm, cfg: SweepConfig) -> dict[str, Any]:
    """Metadata of the run's settings (collective: the wire interface is agreed on)."""
    state = ctimer.status()
    settings: dict[str, Any] = {
        "timer": cfg.timer,
        "timer_library": str(state.library) if state.available else state.reason,
        "buffers": "auto" if cfg.buffers == AUTO else cfg.buffers,
        "llc_bytes": last_level_cache(),
    }
    iface = wire.measurable(comm) if wire.interface() else ""
    if iface:
        settings["wire_interface"] = iface
    return settings

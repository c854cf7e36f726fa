"""Bytes on the wire as the network interface counts them (emulated links: tcp, veth).

The interface is ``$HPCOPT_WIRE_IFACE``, else ``$FI_TCP_IFACE`` (set by jobs/interconnect.sh
for its veth links). Its transmit counter comes from ``/proc/self/net/dev``, which shows the
network namespace of the reading process. Ranks that share an interface (loopback) each see
the traffic of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpi4py import MPI

__all__ = ["IFACE_ENV", "interface", "measurable", "measure_calls", "transmitted"]

IFACE_ENV = ("HPCOPT_WIRE_IFACE", "FI_TCP_IFACE")
NET_DEV = Path("/proc/self/net/dev")
MEASURED_CALLS = 10


def interface() -> str:
    """The interface named by the environment, or ``""``."""
    return next((os.environ[k].strip() for k in IFACE_ENV if os.environ.get(k, "").strip()), "")


def transmitted(iface: str) -> int | None:
    """Bytes ``iface`` has transmitted so far, or None when it is not there."""
    try:
        lines = NET_DEV.read_text().splitlines()[2:]
    except OSError:
        return None
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == iface:
            fields = counters.split()
            return int(fields[8]) if len(fields) > 8 else None
    return None


def measurable(comm: MPI.Comm) -> str:
    """The interface when every rank can read its counter (collective), else ``""``."""
    iface = interface()
    readable = bool(iface) and transmitted(iface) is not None
    return iface if comm.allreduce(readable, op=MPI.LAND) else ""


def measure_calls(comm: MPI.Comm, iface: str, run: Callable[[], Any], iters: int) -> float:
    """Bytes this rank's interface sent per call over a few extra untimed calls, back to
    back between barriers, less what one barrier sends (collective: every rank makes the
    same calls)."""
    calls = max(1, min(iters, MEASURED_CALLS))
    comm.Barrier()
    start = transmitted(iface) or 0
    comm.Barrier()
    before = transmitted(iface) or 0
    for _ in range(calls):
        run()
    comm.Barrier()
    after = transmitted(iface) or 0
    return max(0.0, (after - before - (before - start)) / calls)

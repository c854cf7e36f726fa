"""Run metadata: what ran, where, on which MPI and devices, under which scheduler."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from typing import Any

from mpi4py import MPI

import hpcopt

__all__ = [
    "TOPOLOGY_ENV",
    "collect_meta",
    "cpu_model",
    "mpi_summary",
    "oversubscription_note",
    "shared_memory_node",
    "thread_level_name",
    "topology",
    "usable_cores",
    "versions",
]

TOPOLOGY_ENV = "HPCOPT_TOPOLOGY"  # set by jobs/interconnect.sh for emulated topologies

# Environment variables that select or tune the transport; recorded with every run.
NETWORK_ENV_PREFIXES = (
    "UCX_",
    "FI_",
    "MPIR_CVAR_",
    "MPICH_",
    "OMPI_",
    "PMIX_MCA_",
    "I_MPI_",
    "HCOLL_",
    "NCCL_",
    "MV2_",
    "HYDRA_",
    "MPIEXEC_",
)
NETWORK_ENV_NAMES = (
    "CUDA_VISIBLE_DEVICES",
    "HPCOPT_CUDA_AWARE",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)

_THREAD_LEVELS = {
    MPI.THREAD_SINGLE: "single",
    MPI.THREAD_FUNNELED: "funneled",
    MPI.THREAD_SERIALIZED: "serialized",
    MPI.THREAD_MULTIPLE: "multiple",
}


def thread_level_name() -> str:
    """The MPI thread level in force, as a word."""
    return _THREAD_LEVELS.get(MPI.Query_thread(), str(MPI.Query_thread()))


def cpu_model() -> str:
    """The CPU model name of this host."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def oversubscription_note(meta: dict[str, Any]) -> str | None:
    """A warning line when some host runs more ranks than it has cores."""
    hosts, cores = meta.get("hosts", []), meta.get("cores", {})
    crowded = [f"{hosts.count(h)} ranks on {n} cores of {h}" for h, n in cores.items()
               if hosts.count(h) > n]  # fmt: skip
    if not crowded:
        return None
    return (f"WARNING oversubscribed: {'; '.join(crowded)}; ranks wait for a core, so timings "
            "show contention, not the link: use them for correctness only")  # fmt: skip


def mpi_summary() -> dict[str, str]:
    """MPI library version string (first line and full), standard version, thread level in
    force and the one asked for at MPI_Init_thread."""
    import mpi4py

    library = MPI.Get_library_version().strip()
    major, minor = MPI.Get_version()
    return {
        "mpi_library": library.splitlines()[0].strip() if library else "unknown",
        "mpi_library_version": library,
        "mpi_standard_version": f"{major}.{minor}",
        "thread_level": thread_level_name(),
        "thread_level_requested": str(mpi4py.rc.thread_level),
    }


def versions() -> dict[str, str]:
    """Versions of hpcopt and of the libraries its numbers depend on."""
    import h5py
    import mpi4py
    import numpy

    return {
        "hpcopt": hpcopt.__version__,
        "mpi4py": mpi4py.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
        "python": platform.python_version(),
    }


def _env(prefixes: tuple[str, ...], names: tuple[str, ...] = ()) -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes) or k in names}


def topology() -> dict[str, Any] | None:
    """The emulated topology that jobs/interconnect.sh exported (``HPCOPT_TOPOLOGY``), if any."""
    text = os.environ.get(TOPOLOGY_ENV)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"unparsed": text}


def shared_memory_node(comm: MPI.Comm) -> int:
    """This rank's shared-memory node: the lowest rank of ``comm`` that shares memory with it."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, comm.rank)
    try:
        return int(node.allreduce(comm.rank, op=MPI.MIN))
    finally:
        node.Free()


def collect_meta(
    comm: MPI.Comm, *, kernel: str, tag: str, device: str, cuda_aware: bool, **extra: Any
) -> dict[str, Any]:
    """Gather per-rank host facts to rank 0 and return the run's metadata there."""
    per_rank = comm.gather(
        (socket.gethostname(), cpu_model(), usable_cores(), shared_memory_node(comm)), root=0
    )
    if per_rank is None:  # not rank 0
        return {}
    hosts = [h for h, _, _, _ in per_rank]
    cores = {h: n for h, _, n, _ in per_rank}
    shm_nodes = [n for _, _, _, n in per_rank]
    meta: dict[str, Any] = {
        "kernel": kernel,
        "argv": list(sys.argv),
        "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tag": tag,
        "ranks": comm.size,
        "nodes": max(len(set(hosts)), len(set(shm_nodes))),  # emulated nodes share a host
        "hosts": hosts,
        "shared_memory_nodes": shm_nodes,
        "cpu_models": [c for _, c, _, _ in per_rank],
        "cores": cores,
        "oversubscribed": any(hosts.count(h) > n for h, n in cores.items()),
        "device": device,
        "cuda_aware": cuda_aware,
        "versions": versions(),
        "slurm": _env(("SLURM_",)),
        "env": _env(NETWORK_ENV_PREFIXES, NETWORK_ENV_NAMES),
    }
    emulated = topology()
    if emulated is not None:
        meta["topology"] = emulated
    meta.update(mpi_summary())
    meta.update(extra)
    return meta

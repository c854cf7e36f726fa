"""Collective algorithms over mpi4py: one registry per operation, one module per algorithm.

``ALLREDUCE``, ``ALLGATHER``, ``REDUCE_SCATTER``, ``BCAST``, ``ALLTOALL`` (and ``REDUCE``,
``GATHER``, ``SCATTER``, ``BARRIER``, which have MPI's own call only) are registries: each
holds the operation (buffers, exact result, nccl-tests bus factor) and its algorithms, each
registered with its options and α–β–γ cost form. Allreduce algorithms reduce a contiguous
1-D NumPy or CuPy array in place and return the bytes this rank handed to MPI send calls;
``ring``, ``rabenseifner`` and ``hierarchical`` are compositions of the reduce-scatter,
allgather, reduce and bcast algorithms. Spec strings such as ``ring`` or
``ring-pipelined:segment=64K,window=4`` select them; :func:`register` adds new ones.
"""

from __future__ import annotations

import importlib

from hpcopt.collectives import registry as _registry
from hpcopt.collectives.cost import CostForm
from hpcopt.collectives.registry import *  # noqa: F403 (the registries and their helpers)

__all__ = [*_registry.__all__, "CostForm", "cost_form"]


# The built-in algorithms, in the order `--algo all` runs them; each module registers itself.
BUILTIN = ("native", "ring", "ring_pipelined", "tree", "recursive_doubling", "rabenseifner",
           "hierarchical", "recursive_halving", "pairwise", "bruck",
           "scatter_allgather")  # fmt: skip
for _module in BUILTIN:
    importlib.import_module(f"hpcopt.collectives.{_module}")


def cost_form(spec: str, kernel: str = "allreduce") -> CostForm | None:
    """The registered cost form of an algorithm label such as ``ring-pipelined:segment=64K``
    of operation ``kernel``; None for an unknown one."""
    owner = _registry.COLLECTIVES.get(kernel)
    name = spec.split(":")[0].strip()
    return owner[name].info["cost"] if owner is not None and name in owner else None

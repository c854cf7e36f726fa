"""Allreduce algorithms over mpi4py, each one function over (communicator, buffer).

Every algorithm reduces a contiguous 1-D NumPy or CuPy array in place and returns the
number of bytes this rank handed to MPI send calls. Each module registers its function
with its options and its α–β–γ cost form; spec strings such as ``ring`` or
``ring-pipelined:segment=64K,window=4`` select them. :func:`register` adds new ones.
"""

from __future__ import annotations

import importlib

from hpcopt.collectives.cost import CostForm
from hpcopt.collectives.registry import (
    ALLREDUCE,
    BoundAlgorithm,
    bus_factor,
    get_algorithm,
    parse_algorithms,
    register,
)

__all__ = [
    "ALLREDUCE",
    "BoundAlgorithm",
    "CostForm",
    "bus_factor",
    "cost_form",
    "get_algorithm",
    "parse_algorithms",
    "register",
]


# The built-in algorithms, in the order `--algo all` runs them; each module registers itself.
BUILTIN = ("native", "ring", "ring_pipelined", "tree", "recursive_doubling", "rabenseifner",
           "hierarchical")  # fmt: skip
for _module in BUILTIN:
    importlib.import_module(f"hpcopt.collectives.{_module}")


def cost_form(spec: str) -> CostForm | None:
    """The registered cost form of an algorithm label such as ``ring-pipelined:segment=64K``."""
    name = spec.split(":")[0].strip()
    return ALLREDUCE[name].info["cost"] if name in ALLREDUCE else None

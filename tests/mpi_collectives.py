"""Every allreduce algorithm against MPI_Allreduce, run under mpiexec at any rank count.

Checks each algorithm x dtype x count class with SUM (and MAX/MIN on float32 and
int64) on COMM_WORLD, COMM_SELF and a duplicate of COMM_WORLD, with random data
(exact comparison for integers, a tolerance for floats) and with the harness's
exact-grid data (exact for all dtypes). Prints one line on rank 0 and exits nonzero on any mismatch.
"""

from __future__ import annotations

import sys

import numpy as np
from mpi4py import MPI

from hpcopt.backend import Scratch
from hpcopt.cases.allreduce import fill_check_data
from hpcopt.collectives import ALGORITHMS, get_algorithm

EXTRA_SPECS = (
    "ring-pipelined:segment=256",
    "ring-pipelined:segment=24,window=64",
    "hierarchical:ppn=2",
    "hierarchical:ppn=3",
)
DTYPES = ("float32", "float64", "int32", "int64")
OPS = (("sum", MPI.SUM), ("max", MPI.MAX), ("min", MPI.MIN))


def counts(p: int) -> list[int]:
    """Count classes: 0, 1, fewer than ranks, odd, a large odd one."""
    return sorted({0, 1, max(p - 1, 0), 7, 4099})


def run(algo, comm, x, op):
    y = x.copy()
    if algo.out_of_place:
        out = np.empty_like(x)
        algo.run(comm, y, op=op, scratch=Scratch(), out=out)
        return out
    algo.run(comm, y, op=op, scratch=Scratch())
    return y


def mismatches(got, want, dtype, p, op_name) -> int:
    if np.dtype(dtype).kind == "i" or op_name != "sum":
        return int(np.count_nonzero(got != want))
    tol = 8 * p * np.finfo(dtype).eps * np.maximum(np.abs(want), 1)
    return int(np.count_nonzero(np.abs(got - want) > tol))


def check_comm(comm: MPI.Comm, label: str, dtypes=DTYPES, ops=OPS) -> list[str]:
    failures = []
    specs = [*ALGORITHMS, *EXTRA_SPECS]
    for spec in specs:
        algo = get_algorithm(spec)
        for dtype in dtypes:
            for op_name, op in ops:
                if op_name != "sum" and dtype not in ("float32", "int64"):
                    continue
                for n in counts(comm.size):
                    rng = np.random.default_rng([n, comm.rank, len(spec)])
                    if np.dtype(dtype).kind == "i":
                        x = rng.integers(-1000, 1000, n).astype(dtype)
                    else:
                        x = rng.standard_normal(n).astype(dtype)
                    ref = np.empty_like(x)
                    comm.Allreduce(x, ref, op)
                    bad = mismatches(run(algo, comm, x, op), ref, dtype, comm.size, op_name)
                    if op_name == "sum":
                        grid = np.empty(n, dtype)
                        fill_check_data(grid, comm.rank)
                        comm.Allreduce(grid.copy(), ref, op)
                        bad += int(np.count_nonzero(run(algo, comm, grid, op) != ref))
                    if bad:
                        failures.append(f"{label} {spec} {dtype} {op_name} n={n}: {bad} wrong")
    return failures


def main() -> int:
    world = MPI.COMM_WORLD
    dup = world.Dup()
    failures = check_comm(world, "world") + check_comm(MPI.COMM_SELF, "self")
    failures += check_comm(dup, "dup", dtypes=("float64",), ops=OPS[:1])
    dup.Free()
    everyone = world.gather(failures, root=0)
    if world.rank == 0:
        flat = [f for per_rank in everyone for f in per_rank]
        for line in flat[:20]:
            print(line)
        print(f"{world.size} ranks: {len(flat)} failures")
        return 1 if flat else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

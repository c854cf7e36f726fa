"""Every rank asks for the C timing core at the same moment (concurrent first use)."""

from __future__ import annotations

from mpi4py import MPI

from hpcopt.timer import available, status

if __name__ == "__main__":
    MPI.COMM_WORLD.Barrier()
    here, everywhere = status().available, available(MPI.COMM_WORLD)
    print(f"rank {MPI.COMM_WORLD.rank} available {here} on all ranks {everywhere}", flush=True)

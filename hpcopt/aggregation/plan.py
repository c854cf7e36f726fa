"""The one place that decides how compressed payloads are aggregated, or refuses.

``plan(encoder, ef=, method=, algorithm=, dtype=, op=, device=)`` checks the whole
combination before anything runs and returns a :class:`Plan`: which path sums the
payloads, with which core allreduce, in how many allreduce stages. Kernels, optimizers,
benchmarks and the cost model all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcopt.collectives import get_algorithm
from hpcopt.encoders import Codec, get_encoder, with_memory
from hpcopt.errors import UsageError

__all__ = ["METHODS", "Plan", "plan"]

# auto: powersgd for two-stage encoders, summable when the payload sums, else allgather.
# gossip: payloads exchanged with neighbours (decentralized optimizers), not summed here.
# root: payloads sent to a root that sums and broadcasts (a parameter server; some ranks may
# send nothing).
METHODS = ("auto", "summable", "allgather", "two-phase", "vote", "powersgd", "gossip", "root")
GATHER_PATHS = ("allgather", "two-phase", "vote")


@dataclass(frozen=True)
class Plan:
    """A checked aggregation: encoder spec, memory, path, core allreduce and its stages."""

    encoder: str
    ef: bool
    path: str
    algorithm: str
    stages: int
    summable: bool

    @property
    def label(self) -> str:
        """What a record calls the algorithm: the core allreduce, or the path for gathers."""
        return self.algorithm if self.stages else self.path

    @property
    def encoder_label(self) -> str:
        """The encoder as records name it: ``topk:ratio=0.01+ef`` with error feedback."""
        return f"{self.encoder}+ef" if self.ef else self.encoder

    def codec(self, *, seed: int = 0, rank: int = 0) -> Codec:
        """A fresh codec for this plan (the encoder, with its memory when ``ef``)."""
        return with_memory(get_encoder(self.encoder, seed=seed, rank=rank), self.ef)


def _path(method: str, two_stage: bool, summable: bool, name: str, ef: bool) -> str:
    """The path ``method`` takes for an encoder of this kind; UsageError when it cannot."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    if method == "auto":
        return "powersgd" if two_stage else "summable" if summable else "allgather"
    if two_stage and method == "gossip":
        raise UsageError(f"encoder {name} is summed in two stages and cannot be gossiped")
    if two_stage and method == "root":
        raise UsageError(f"encoder {name} is summed in two stages; it cannot be sent to a root "
                         "and summed there")  # fmt: skip
    if two_stage and method != "powersgd":
        raise UsageError(f"encoder {name} is summed in two stages: use --method auto or powersgd")
    if method == "powersgd" and not two_stage:
        raise UsageError(f"--method powersgd needs the powersgd encoder, not {name}")
    if method == "summable" and not summable:
        raise UsageError(f"encoder {name} is not summable; use --method allgather or two-phase")
    if method == "vote" and name != "sign":
        raise UsageError(f"--method vote needs the sign encoder, not {name}")
    if method in ("two-phase", "gossip") and ef:
        raise UsageError(f"--method {method} carries no error feedback (--ef)")
    return method


def _check_sum(sum_dtype: str, algorithm: str, device: str, name: str) -> None:
    """float16 sums in any algorithm (MPI's own through a user op, host only); bfloat16 only
    through MPI's own Allreduce with a user op."""
    user_op = sum_dtype == "bfloat16" or (sum_dtype == "float16" and algorithm == "native")
    if sum_dtype == "bfloat16" and algorithm != "native":
        raise UsageError(f"{name} payloads sum through MPI's Allreduce with a user op: use "
                         f"the native algorithm, not {algorithm}")  # fmt: skip
    if user_op and device != "cpu":
        raise UsageError(f"{name} sums through an MPI user op, which needs host buffers "
                         f"(--device cpu)")  # fmt: skip


def plan(
    encoder: str,
    *,
    ef: bool = False,
    method: str = "auto",
    algorithm: str = "native",
    dtype: str = "float32",
    op: str = "sum",
    device: str = "cpu",
) -> Plan:
    """Check (encoder, ef, method, algorithm, dtype, op, device); the plan or a UsageError."""
    if dtype != "float32" or op != "sum":
        raise UsageError(f"compressed aggregation sums float32 (not {dtype}, op {op})")
    probe = get_encoder(encoder)
    core = get_algorithm(algorithm)
    path = _path(method, probe.two_stage, probe.summable, probe.name, ef)
    stages = {"summable": 1, "powersgd": 2}.get(path, 0)
    if path == "summable":
        _check_sum(probe.sum_dtype, core.name, device, probe.name)
    label = core.label if stages else "native"
    return Plan(encoder.strip(), ef, path, label, stages, probe.summable)

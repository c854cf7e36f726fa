"""The one place that decides how compressed payloads are aggregated, or refuses.

``plan(encoder, ef=, method=, algorithm=, dtype=, op=, device=, ranks=)`` checks the whole
combination before anything runs and returns a :class:`Plan`: which path sums the
payloads, with which core allreduce, in how many allreduce stages, with which options.
Kernels, optimizers, benchmarks and the cost model all ask it. A method is a spec like the
others: ``hierarchical:ppn=2,intra=fp16`` or ``secure:threshold=3,dropouts=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hpcopt.aggregation.secure import DROP_STAGES, PRGS, SecureConfig
from hpcopt.collectives import get_algorithm
from hpcopt.encoders import Codec, get_encoder, with_memory
from hpcopt.encoders.adaptive import Adaptive
from hpcopt.errors import UsageError
from hpcopt.registry import Option, Registry
from hpcopt.specs import choice, integer, nonnegative_int, positive_int, positive_real

__all__ = ["METHODS", "METHOD_SPECS", "Plan", "plan"]

# auto: powersgd for two-stage encoders, summable when the payload sums, else allgather.
# gossip: payloads exchanged with neighbours (decentralized optimizers), not summed here.
# root: payloads sent to a root that sums and broadcasts (a parameter server; some ranks may
# send nothing).
# hierarchical: sum inside each node, one of the flat paths among node leaders, broadcast.
# secure: Bonawitz et al.'s secure aggregation of fixed-point inputs (encoder none only).
FLAT = ("auto", "summable", "allgather", "two-phase", "vote", "powersgd")
METHODS = (*FLAT, "gossip", "root", "hierarchical", "secure")
GATHER_PATHS = ("allgather", "two-phase", "vote")
INTRA = ("fp32", "fp16")

_SECURE_PARSERS: dict[str, Any] = {
    "threshold": positive_int, "dropouts": nonnegative_int, "seed": integer,
    "drop": choice(*DROP_STAGES), "ring_bits": choice("32", "64"), "scale": positive_real,
    "prg": choice(*PRGS),
}  # fmt: skip

# Each method with its options; a method's options become its path's keyword arguments.
METHOD_SPECS: Registry[dict[str, Any]] = Registry("method")
for _name in (*FLAT, "gossip", "root"):
    METHOD_SPECS.register(_name, dict, options=())
METHOD_SPECS.register("hierarchical", dict, options=(
    Option("ppn", nonnegative_int, 0, "ranks per emulated node (0: shared-memory nodes)"),
    Option("intra", choice(*INTRA), "fp32", "what the node sum carries: fp32 or fp16"),
    Option("leaders", choice(*FLAT), "auto", "the path among node leaders"),
))  # fmt: skip
METHOD_SPECS.register("secure", dict, options=tuple(
    Option(f.name, _SECURE_PARSERS[f.name], f.default) for f in fields(SecureConfig)
))  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A checked aggregation: encoder spec, memory, path, core allreduce and its stages."""

    encoder: str
    ef: bool
    path: str
    algorithm: str
    stages: int
    summable: bool
    options: tuple[tuple[str, Any], ...] = ()  # the path's own keyword arguments
    inner: Plan | None = None  # hierarchical: the plan among node leaders

    @property
    def label(self) -> str:
        """What a record calls the algorithm: the core allreduce, or the path for gathers;
        ``hierarchical+ring`` for a hierarchical sum with ring among the leaders."""
        if self.inner is not None:
            return f"{self.path}+{self.inner.label}"
        return self.algorithm if self.stages else self.path

    @property
    def method_options(self) -> dict[str, Any]:
        """The path's options, as given to it."""
        return dict(self.options)

    @property
    def encoder_label(self) -> str:
        """The encoder as records name it: ``topk:ratio=0.01+ef`` with error feedback."""
        return f"{self.encoder}+ef" if self.ef else self.encoder

    def codec(self, *, seed: int = 0, rank: int = 0) -> Codec:
        """A fresh codec for this plan (the encoder, with its memory when ``ef``)."""
        return with_memory(get_encoder(self.encoder, seed=seed, rank=rank), self.ef)


def _path(method: str, two_stage: bool, summable: bool, name: str, ef: bool) -> str:
    """The path ``method`` takes for an encoder of this kind; UsageError when it cannot."""
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


def _flat(encoder: str, ef: bool, method: str, algorithm: str, device: str) -> Plan:
    """A plan along one of the flat paths (or gossip)."""
    probe = get_encoder(encoder)
    if isinstance(probe, Adaptive) and probe.rule == "residual" and not ef:
        raise UsageError("adaptive: rule=residual adapts to the error-feedback residual: add --ef")
    core = get_algorithm(algorithm)
    path = _path(method, probe.two_stage, probe.summable, probe.name, ef)
    stages = {"summable": 1, "powersgd": 2}.get(path, 0)
    if path == "summable":
        _check_sum(probe.sum_dtype, core.name, device, probe.name)
    label = core.label if stages else "native"
    return Plan(encoder.strip(), ef, path, label, stages, probe.summable)


def _hierarchical(
    encoder: str, ef: bool, options: dict[str, Any], algorithm: str, device: str
) -> Plan:
    """Node sums, then ``leaders`` (a flat path) among node leaders, then node broadcasts."""
    if device != "cpu" and options["intra"] == "fp16":
        raise UsageError("hierarchical: intra=fp16 adds float16 on the host (use --device cpu)")
    inner = _flat(encoder, ef, options.pop("leaders"), algorithm, device)
    options["ranks_per_node"] = options.pop("ppn")
    return Plan(inner.encoder, ef, "hierarchical", inner.algorithm, 0, inner.summable,
                tuple(sorted(options.items())), inner)  # fmt: skip


def _secure(
    encoder: str, ef: bool, options: dict[str, Any], device: str, ranks: int | None
) -> Plan:
    """Secure aggregation: the protocol quantizes by itself, so no encoder and no memory."""
    name = get_encoder(encoder).name
    if name != "none":
        raise UsageError(f"--method secure quantizes to fixed point itself: use --encoder none, "
                         f"not {name}")  # fmt: skip
    if ef:
        raise UsageError("--method secure carries no error feedback (--ef)")
    if device != "cpu":
        raise UsageError("--method secure runs on host buffers (use --device cpu)")
    from hpcopt.aggregation import secure_crypto  # noqa: F401  (UsageError naming the extra)

    options["ring_bits"] = int(options.get("ring_bits", 32))
    config = SecureConfig(**options)
    if ranks is not None:
        config.validate(ranks)
    return Plan(encoder.strip(), False, "secure", "native", 0, False, (("config", config),))


def plan(
    encoder: str,
    *,
    ef: bool = False,
    method: str = "auto",
    algorithm: str = "native",
    dtype: str = "float32",
    op: str = "sum",
    device: str = "cpu",
    ranks: int | None = None,
) -> Plan:
    """Check (encoder, ef, method, algorithm, dtype, op, device); the plan or a UsageError.

    ``ranks``, when known, also checks the options that depend on it (secure's threshold).
    """
    if dtype != "float32" or op != "sum":
        raise UsageError(f"compressed aggregation sums float32 (not {dtype}, op {op})")
    selection = METHOD_SPECS.select(method)
    options = selection.kwargs()
    if selection.name == "hierarchical":
        return _hierarchical(encoder, ef, {**_defaults("hierarchical"), **options}, algorithm,
                             device)  # fmt: skip
    if selection.name == "secure":
        return _secure(encoder, ef, options, device, ranks)
    return _flat(encoder, ef, selection.name, algorithm, device)


def _defaults(method: str) -> dict[str, Any]:
    """Every option of ``method`` at its default."""
    return {o.argument: o.default for o in METHOD_SPECS[method].options}

"""Distributed optimizers in a registry: sync, local, dsgd, choco, easgd.

``get_optimizer(name, comm, problem, cfg)`` builds one; :func:`register` adds user
algorithms (a subclass of :class:`Optimizer`). :func:`validate` checks a configuration on
every rank before any communication, so bad combinations fail as one line.
"""

from __future__ import annotations

from mpi4py import MPI

from hpcopt.collectives import get_algorithm
from hpcopt.compressed import METHODS
from hpcopt.encoders import get_encoder
from hpcopt.errors import UsageError
from hpcopt.optim.base import PHASES, Config, Ledger, Optimizer
from hpcopt.optim.choco import Choco
from hpcopt.optim.dsgd import DSGD
from hpcopt.optim.easgd import EASGD
from hpcopt.optim.gossip import EXCHANGES
from hpcopt.optim.local import LocalSGD
from hpcopt.optim.sync import SyncSGD
from hpcopt.optim.topology import TOPOLOGIES, mixing_matrix, neighbors
from hpcopt.problems import Problem

__all__ = [
    "GOSSIP",
    "PHASES",
    "Config",
    "Ledger",
    "Optimizer",
    "available",
    "get_optimizer",
    "mixing_matrix",
    "register",
    "validate",
]

_REGISTRY: dict[str, type[Optimizer]] = {}
GOSSIP = {"dsgd", "choco"}  # algorithms that need a topology


def register(name: str, cls: type[Optimizer]) -> None:
    """Add an algorithm: a subclass of Optimizer built as cls(comm, problem, cfg)."""
    if not name.isidentifier():
        raise UsageError(f"optimizer name {name!r} must be an identifier")
    _REGISTRY[name] = cls


def available() -> list[str]:
    """Registered algorithm names."""
    return list(_REGISTRY)


def _check_allreduce(cfg: Config) -> None:
    enc = get_encoder(cfg.encoder, seed=cfg.seed)
    get_algorithm(cfg.allreduce)
    if cfg.method not in METHODS:
        raise UsageError(f"unknown method {cfg.method!r}; choose from: {', '.join(METHODS)}")
    two_stage = bool(getattr(enc, "two_stage", False))
    if two_stage and cfg.method not in ("auto", "powersgd"):
        raise UsageError(f"encoder {enc.name} needs --method auto or powersgd, not {cfg.method}")
    if cfg.method == "powersgd" and not two_stage:
        raise UsageError(f"--method powersgd needs the powersgd encoder, not {enc.name}")
    if cfg.method == "summable" and not enc.summable:
        raise UsageError(f"encoder {enc.name} is not summable; use --method allgather")
    if cfg.method == "vote" and enc.name != "sign":
        raise UsageError("--method vote needs the sign encoder")
    if cfg.method == "two-phase" and cfg.ef:
        raise UsageError("--method two-phase cannot carry error feedback (--ef)")
    if enc.name == "bf16" and cfg.allreduce != "native":
        raise UsageError("bf16 sums need --allreduce native")


def validate(name: str, cfg: Config, size: int) -> None:
    """UsageError for an unknown name or a combination the algorithm cannot run."""
    if name not in _REGISTRY:
        raise UsageError(f"unknown algorithm {name!r}; choose from: {', '.join(_REGISTRY)}")
    if not cfg.lr > 0 or cfg.batch < 0 or cfg.local_steps < 1 or cfg.tau < 1:
        raise UsageError("--lr must be > 0, --batch >= 0, --local-steps and --tau >= 1")
    if not (0 < cfg.participation <= 1 and 0 <= cfg.stragglers <= 1):
        raise UsageError("--participation must be in (0, 1] and --stragglers in [0, 1]")
    if not (0 < cfg.gamma <= 1 and 0 < cfg.alpha < 1 and cfg.straggler_delay >= 0):
        raise UsageError("--gamma must be in (0, 1], --alpha in (0, 1), delays >= 0")
    if name in GOSSIP:
        if cfg.topology is None:
            raise UsageError(f"{name} needs --topology ({', '.join(TOPOLOGIES)})")
        if cfg.exchange not in EXCHANGES:
            raise UsageError(f"unknown exchange {cfg.exchange!r}; choose: {', '.join(EXCHANGES)}")
        neighbors(cfg.topology, 0, size)
        if cfg.ef:
            raise UsageError(f"{name} takes no --ef (CHOCO compensates errors itself)")
        if getattr(get_encoder(cfg.encoder, seed=cfg.seed), "two_stage", False):
            raise UsageError(f"{name} cannot gossip through the two-stage powersgd encoder")
    else:
        if cfg.topology is not None:
            raise UsageError(f"{name} takes no --topology (only {', '.join(sorted(GOSSIP))})")
        _check_allreduce(cfg)


def get_optimizer(name: str, comm: MPI.Comm, problem: Problem, cfg: Config) -> Optimizer:
    """This rank's optimizer ``name``, after :func:`validate`."""
    validate(name, cfg, comm.size)
    return _REGISTRY[name](comm, problem, cfg)


for _cls in (SyncSGD, LocalSGD, DSGD, Choco, EASGD):
    register(_cls.name, _cls)

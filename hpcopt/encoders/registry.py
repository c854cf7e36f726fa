"""The registry of payload encoders: ``ENCODERS.build("topk:ratio=0.01", seed=0, rank=r)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hpcopt.registry import Option, Registry

__all__ = ["ENCODERS", "available", "get_encoder", "register"]

ENCODERS: Registry[Any] = Registry("encoder", context=("seed", "rank"))


def register(
    name: str, factory: Callable[..., Any], *, options: Sequence[Option] | None = None
) -> None:
    """Add an encoder: ``factory(**options, seed=, rank=)`` returns it.

    Options default to the factory's keyword parameters with defaults (other than seed
    and rank), each parsed as its default's type (bool, int, float or str).
    """
    ENCODERS.register(name, factory, options=options)


def available() -> list[str]:
    """Registered encoder names."""
    return ENCODERS.names()


def get_encoder(spec: str, *, seed: int = 0, rank: int = 0) -> Any:
    """The encoder described by ``NAME[:key=value,...]``; UsageError when malformed."""
    return ENCODERS.build(spec, seed=seed, rank=rank)

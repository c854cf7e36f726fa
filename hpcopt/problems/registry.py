"""Problem registry: ``get_problem("NAME:key=value,...", rank=, size=, seed=)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpcopt.problems.base import Problem
from hpcopt.registry import Option, Registry, options_from_defaults

__all__ = ["PROBLEMS", "available", "get_problem", "register"]

PROBLEMS: Registry[Problem] = Registry("problem", context=("rank", "size", "seed"))


def register(
    name: str, factory: Callable[..., Problem], *, options: Sequence[Option] | None = None
) -> None:
    """Add a problem: ``factory(*, rank, size, seed, **options)``.

    Options default to the factory's ``defaults`` dict when it has one (the linear models),
    else to its keyword parameters; each is parsed as its default's type.
    """
    defaults = getattr(factory, "defaults", None)
    if options is None and isinstance(defaults, dict):
        options = options_from_defaults(defaults)
    PROBLEMS.register(name, factory, options=options)


def available() -> list[str]:
    """Registered problem names."""
    return sorted(PROBLEMS.names())


def get_problem(spec: str, *, rank: int, size: int, seed: int = 0) -> Problem:
    """The problem ``spec`` names, for one rank of ``size``; UsageError when malformed."""
    return PROBLEMS.build(spec, rank=rank, size=size, seed=seed)

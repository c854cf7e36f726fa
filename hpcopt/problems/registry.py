"""Problem registry: ``get_problem("NAME:key=value,...", rank=, size=, seed=)``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from hpcopt.errors import UsageError
from hpcopt.problems.base import Problem

__all__ = ["available", "get_problem", "parse_spec", "register"]

Factory = Callable[..., Problem]
_REGISTRY: dict[str, Factory] = {}
_RESERVED = ("rank", "size", "seed")


def register(name: str, factory: Factory) -> None:
    """Add a problem: factory(*, rank, size, seed, **knobs) with a typed default per knob."""
    if not name.isidentifier():
        raise UsageError(f"problem name {name!r} must be an identifier")
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Registered problem names."""
    return sorted(_REGISTRY)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME[:key=value,...]`` into the name and raw values."""
    name, _, rest = spec.strip().partition(":")
    raw: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise UsageError(f"problem spec {spec!r}: {item!r} is not key=value")
        if key in raw:
            raise UsageError(f"problem spec {spec!r}: {key!r} given twice")
        raw[key] = value
    return name, raw


def _knobs(factory: Factory) -> dict[str, Any]:
    params = inspect.signature(factory).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name not in _RESERVED and p.default is not inspect.Parameter.empty
    }


def _convert(name: str, key: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, int):
            number = float(value)  # accepts 1e5
            if not number.is_integer():
                raise ValueError
            return int(number)
        result = type(default)(value)
        if isinstance(result, float) and not math.isfinite(result):
            raise ValueError
        return result
    except ValueError:
        raise UsageError(f"{name}: {key}={value!r} is not a {type(default).__name__}") from None


def get_problem(spec: str, *, rank: int, size: int, seed: int = 0) -> Problem:
    """Build the problem named by spec for one rank of size; unknown names/keys are UsageErrors."""
    name, raw = parse_spec(spec)
    if name not in _REGISTRY:
        raise UsageError(f"unknown problem {name!r}; known: {', '.join(available())}")
    knobs = _knobs(_REGISTRY[name])
    unknown = sorted(set(raw) - set(knobs))
    if unknown:
        raise UsageError(
            f"{name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(knobs))}"
        )
    kwargs = {k: _convert(name, k, v, knobs[k]) for k, v in raw.items()}
    return _REGISTRY[name](rank=rank, size=size, seed=seed, **kwargs)

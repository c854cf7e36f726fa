"""Payload encoders (compressors) with the bits really on the wire, in a registry.

``get_encoder("topk:ratio=0.01", seed=0, rank=r)`` builds one; :func:`register` adds
user encoders. Every encoder turns a float32 array into a :class:`Payload` of packed
buffers and back; :class:`ErrorFeedback` wraps any of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from hpcopt.encoders.base import Encoder, Payload
from hpcopt.encoders.bf16 import BFloat16
from hpcopt.encoders.dgc import DGC
from hpcopt.encoders.ef import ErrorFeedback
from hpcopt.encoders.elias import QSGDElias
from hpcopt.encoders.fp16 import Float16
from hpcopt.encoders.natural import Natural
from hpcopt.encoders.none import Identity
from hpcopt.encoders.powersgd import PowerSGD
from hpcopt.encoders.qsgd import QSGD
from hpcopt.encoders.randomk import RandomK
from hpcopt.encoders.sign import Sign
from hpcopt.encoders.terngrad import TernGrad
from hpcopt.encoders.topk import TopK
from hpcopt.errors import UsageError
from hpcopt.specs import parse_spec

__all__ = [
    "Encoder",
    "ErrorFeedback",
    "Payload",
    "available",
    "encoder_options",
    "get_encoder",
    "register",
]

Factory = Callable[..., Any]

_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Add an encoder: ``factory(**options, seed=, rank=)`` returns it.

    Its options are the factory's keyword parameters with defaults (other than seed and
    rank); spec values are converted to the default's type (bool, int, float or str).
    """
    if not name or any(c in name for c in ":,= "):
        raise UsageError(f"bad encoder name {name!r}")
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Registered encoder names."""
    return list(_REGISTRY)


def encoder_options(name: str) -> dict[str, Any]:
    """The options of encoder ``name`` and their defaults."""
    params = inspect.signature(_REGISTRY[name]).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty and p.name not in ("seed", "rank")
    }


def _convert(name: str, key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        return type(default)(text) if default is not None else text
    except ValueError:
        kind = type(default).__name__
        raise UsageError(f"encoder {name}: option {key}={text!r} is not a valid {kind}") from None


def get_encoder(spec: str, *, seed: int = 0, rank: int = 0) -> Any:
    """The encoder described by ``NAME[:key=value,...]``; UsageError when malformed."""
    name, raw = parse_spec(spec, "encoder")
    if name not in _REGISTRY:
        raise UsageError(f"unknown encoder {name!r}; choose from: {', '.join(_REGISTRY)}")
    options = encoder_options(name)
    for key in raw:
        if key not in options:
            valid = ", ".join(f"{k}={v}" for k, v in options.items()) or "none"
            raise UsageError(f"encoder {name}: bad option {key!r} (options: {valid})")
    kwargs = {key: _convert(name, key, text, options[key]) for key, text in raw.items()}
    return _REGISTRY[name](**kwargs, seed=seed, rank=rank)


for _cls in (
    Identity, Float16, BFloat16, QSGD, QSGDElias, TernGrad, Sign, Natural, TopK, RandomK, DGC,
    PowerSGD,
):  # fmt: skip
    register(_cls.name, _cls)

"""Payload encoders (compressors) with the bits really on the wire, in a registry.

``get_encoder("topk:ratio=0.01", seed=0, rank=r)`` builds one; :func:`register` adds
user encoders. Every encoder turns a float32 array into a :class:`Payload` of packed
buffers and back; :func:`with_memory` adds error feedback to any of them.
"""

from __future__ import annotations

import importlib

from hpcopt.encoders.base import Codec, Encoder, Payload, TwoStageCodec
from hpcopt.encoders.memory import ErrorFeedback, TwoStageFeedback, with_memory
from hpcopt.encoders.registry import ENCODERS, available, get_encoder, register

__all__ = [
    "ENCODERS",
    "Codec",
    "Encoder",
    "ErrorFeedback",
    "Payload",
    "TwoStageCodec",
    "TwoStageFeedback",
    "available",
    "get_encoder",
    "register",
    "with_memory",
]

# The built-in encoders, in the order `--encoder all` runs them; each module registers itself.
BUILTIN = ("none", "fp16", "bf16", "qsgd", "elias", "terngrad", "sign", "natural", "topk",
           "randomk", "dgc", "powersgd", "adaptive")  # fmt: skip
for _module in BUILTIN:
    importlib.import_module(f"hpcopt.encoders.{_module}")

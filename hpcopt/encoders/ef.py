"""Error feedback: what an encoder dropped last time is added to the next input."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Encoder, Payload, decode_into, flat_f32

__all__ = ["ErrorFeedback"]


class ErrorFeedback:
    """Wraps an encoder: p = x + e; payload = enc(p); e = p − dec(payload).

    The residual ``e`` is kept per input size (it restarts at zero when the size
    changes). Decoding and the wire format are the wrapped encoder's.
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.residual: Any = None
        self._p: Any = None

    @property
    def name(self) -> str:
        return f"ef-{self.encoder.name}"

    @property
    def summable(self) -> bool:
        return self.encoder.summable

    @property
    def unbiased(self) -> bool:
        return False

    def encode(self, x: Any, step: int = 0) -> Payload:
        """Encode x plus the carried residual, and keep what was lost."""
        flat = flat_f32(x)
        xp = array_module(flat)
        if (
            self.residual is None
            or self.residual.size != flat.size
            or (array_module(self.residual) is not xp)
        ):
            self.residual = xp.zeros(flat.size, dtype=np.float32)
            self._p = xp.empty(flat.size, dtype=np.float32)
        xp.add(flat, self.residual, out=self._p)
        payload = self.encoder.encode(self._p.reshape(x.shape), step)
        decode_into(self.encoder, payload, self.residual)
        xp.subtract(self._p, self.residual, out=self.residual)
        return payload

    def decode(self, payload: Payload, out: Any = None) -> Any:
        return self.encoder.decode(payload, out)

    def from_bytes(self, raw: Any, shape: tuple[int, ...], step: int = 0) -> Payload:
        return self.encoder.from_bytes(raw, shape, step)

    def wire_bytes(self, d: int) -> int | None:
        return self.encoder.wire_bytes(d)

    def reset(self) -> None:
        """Forget the residual."""
        self.residual = None

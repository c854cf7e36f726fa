"""Encoder memory: error feedback for one-stage encoders and for PowerSGD's two stages.

Both wrap an encoder and satisfy the same codec protocol, so aggregation paths and
optimizers never ask what they hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcopt.backend import array_module
from hpcopt.encoders.base import Codec, Encoder, Payload, decode_into, flat_f32

__all__ = ["ErrorFeedback", "TwoStageFeedback", "with_memory"]


class _Residual:
    """A float32 residual per input size; restarts at zero when size or array module change."""

    def __init__(self) -> None:
        self.residual: Any = None
        self._p: Any = None

    def plus_residual(self, flat: Any) -> Any:
        """p = x + e (a work array reused between calls)."""
        xp = array_module(flat)
        if (
            self.residual is None
            or self.residual.size != flat.size
            or (array_module(self.residual) is not xp)
        ):
            self.residual = xp.zeros(flat.size, dtype=np.float32)
            self._p = xp.empty(flat.size, dtype=np.float32)
        xp.add(flat, self.residual, out=self._p)
        return self._p

    def reset(self) -> None:
        """Forget the residual."""
        self.residual = None


class ErrorFeedback(_Residual):
    """Wraps an encoder: p = x + e; payload = enc(p); e = p − dec(payload).

    Decoding and the wire format are the wrapped encoder's.
    """

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def summable(self) -> bool:
        return self.encoder.summable

    @property
    def sum_dtype(self) -> str:
        return self.encoder.sum_dtype

    @property
    def unbiased(self) -> bool:
        return False

    @property
    def two_stage(self) -> bool:
        return False

    @property
    def dense(self) -> bool:
        return self.encoder.dense

    def encode(self, x: Any, step: int = 0) -> Payload:
        """Encode x plus the carried residual, and keep what was lost."""
        flat = flat_f32(x)
        p = self.plus_residual(flat)
        payload = self.encoder.encode(p.reshape(x.shape), step)
        if self._fused_residual(payload, p):
            # p − dec(payload) in place, one pass (a sparse payload touches only its entries);
            # p + (−1·v) rounds exactly as p − v. p becomes the residual, the old one the work.
            self.encoder.decode_add(payload, p, weight=-1.0)
            self.residual, self._p = p, self.residual
        else:
            decode_into(self.encoder, payload, self.residual)
            array_module(p).subtract(p, self.residual, out=self.residual)
        return payload

    def _fused_residual(self, payload: Payload, p: Any) -> bool:
        """Whether the encoder has its own decode-and-add and the payload is not a view of p."""
        if type(self.encoder).decode_add is Encoder.decode_add:
            return False
        xp = array_module(p)
        return not any(xp.may_share_memory(b, p) for b in payload.buffers)

    def decode(self, payload: Payload, out: Any = None) -> Any:
        return self.encoder.decode(payload, out)

    def decode_add(self, payload: Payload, out: Any, *, weight: float = 1.0, start: int = 0) -> Any:
        return self.encoder.decode_add(payload, out, weight=weight, start=start)

    def from_bytes(self, raw: Any, shape: tuple[int, ...], step: int = 0) -> Payload:
        return self.encoder.from_bytes(raw, shape, step)

    def wire_bytes(self, d: int) -> int | None:
        return self.encoder.wire_bytes(d)


class TwoStageFeedback(ErrorFeedback):
    """Error feedback around PowerSGD's stages: e = (x + e) − P·Q_localᵀ.

    P is the orthonormalized sum; Q_local is this rank's Q before it is summed, as in
    PyTorch's PowerSGD hook.
    """

    _q_local: Any = None  # this rank's Q before it is summed, kept between calls

    @property
    def two_stage(self) -> bool:
        return True

    def project(self, x: Any, step: int = 0) -> Any:
        self._shape = tuple(x.shape)
        self._m = self.plus_residual(flat_f32(x))
        return self.encoder.project(self._m.reshape(x.shape), step)  # type: ignore[attr-defined]

    def reproject(self, p: Any) -> Any:
        self._p_summed = p
        q = self.encoder.reproject(p)  # type: ignore[attr-defined]
        if self._q_local is None or self._q_local.shape != q.shape:
            self._q_local = q.copy()
        else:
            self._q_local[...] = q
        return q

    def reconstruct(self, q: Any, out: Any = None) -> Any:
        res = self.encoder.reconstruct(q, out)  # type: ignore[attr-defined]
        mine = Payload((self._p_summed.reshape(-1), self._q_local.reshape(-1)), self._shape)
        xp = array_module(self._m)
        local = self.encoder.decode(mine, out=self.encoder.work(xp, "ef-local", mine.size, "f4"))
        xp.subtract(self._m, local.reshape(-1), out=self.residual)
        return res


def with_memory(encoder: Encoder, ef: bool) -> Codec:
    """``encoder`` itself, or wrapped in the error feedback that fits its kind."""
    if not ef:
        return encoder
    return TwoStageFeedback(encoder) if encoder.two_stage else ErrorFeedback(encoder)

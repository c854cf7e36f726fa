"""Error feedback: nothing is lost, and the residual stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

from hpcopt.encoders import ErrorFeedback, available, get_encoder

BIASED = ["sign", "topk:ratio=0.01", "dgc:ratio=0.01", "randomk:ratio=0.05", "terngrad", "fp16"]


def stream(d: int, steps: int) -> list[np.ndarray]:
    """A sequence of gradient-like inputs."""
    rng = np.random.default_rng(11)
    return [rng.standard_normal(d).astype(np.float32) for _ in range(steps)]


@pytest.mark.parametrize("spec", BIASED)
def test_conservation(spec: str) -> None:
    """Σ decoded payloads + residual == Σ inputs (up to float32 rounding)."""
    ef = ErrorFeedback(get_encoder(spec))
    xs = stream(2000, 30)
    sent = np.zeros(2000)
    for step, x in enumerate(xs):
        sent += ef.decode(ef.encode(x, step))
    assert np.allclose(sent + ef.residual, np.sum(xs, axis=0), atol=1e-3)


@pytest.mark.parametrize("spec", BIASED)
def test_residual_bounded(spec: str) -> None:
    """The residual does not grow with the number of steps."""
    ef = ErrorFeedback(get_encoder(spec))
    norms = []
    for step, x in enumerate(stream(2000, 200)):
        ef.encode(x, step)
        norms.append(float(np.linalg.norm(ef.residual)))
    early, late = max(norms[40:100]), max(norms[140:])
    assert late <= 1.5 * early
    assert late <= 200 * float(np.linalg.norm(stream(2000, 1)[0]))


def test_residual_restarts_on_size_change() -> None:
    """A new input size starts from a zero residual."""
    ef = ErrorFeedback(get_encoder("sign"))
    ef.encode(np.arange(10, dtype=np.float32))
    assert ef.residual.any()  # something to forget
    ef.encode(np.arange(3, dtype=np.float32))
    fresh = ErrorFeedback(get_encoder("sign"))
    fresh.encode(np.arange(3, dtype=np.float32))
    assert ef.residual.shape == (3,)
    assert np.array_equal(ef.residual, fresh.residual)
    ef.reset()
    assert ef.residual is None


def test_shape_kept() -> None:
    """Matrices keep their shape through the wrapper."""
    ef = ErrorFeedback(get_encoder("topk:ratio=0.1"))
    x = np.random.default_rng(1).standard_normal((20, 30)).astype(np.float32)
    assert ef.decode(ef.encode(x)).shape == (20, 30)
    assert ef.name == "topk" and not ef.summable and not ef.unbiased


ONE_STAGE = [s for s in available() if s not in ("none", "powersgd", "adaptive")]


@pytest.mark.parametrize("d", [0, 1, 7, 4099, 100_003])
@pytest.mark.parametrize("spec", ONE_STAGE)
def test_residual_is_the_input_minus_what_was_sent_bit_for_bit(spec: str, d: int) -> None:
    """The in-place residual (one decode-and-add of −1 where the encoder has one) equals
    e = (x + e) − decode(payload) computed in two passes, over several steps."""
    ef = ErrorFeedback(get_encoder(spec))
    twin = get_encoder(spec)  # the same encoder again: same random stream, same state
    expected = np.zeros(d, dtype=np.float32)
    for step, x in enumerate(stream(d, 4)):
        p = x + expected
        payload = ef.encode(x, step)
        sent = twin.decode(twin.encode(p, step)).reshape(-1)
        assert np.array_equal(ef.decode(payload).reshape(-1), sent)
        expected = p - sent
        assert np.array_equal(ef.residual, expected), (spec, d, step)

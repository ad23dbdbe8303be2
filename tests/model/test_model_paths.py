"""How ropescope reads what a family's code really does, where its config says otherwise: sliding
windows the code never applies, attention modules wrapped in others or numbered again by a vision
tower, drafters that never run on text. (Each family's numbers are checked against independent
recomputations in test_families.py; these tests pin the reading itself.)"""

from __future__ import annotations

import warnings

import pytest
import torch

import ropescope
from ropescope.errors import UnsupportedModelError
from ropescope.model.families import decoder_attention_modules, is_decoder_attention, refuse_drafter
from ropescope.model.geometry import builds_sliding_mask
from ropescope.survey import FILL, tiny_config, tiny_model


def _tiny(model_type: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny_model(model_type)


def test_a_window_the_code_never_applies_is_not_read():
    """Moshi's config keeps a sliding window (8 in the tiny one, 3,000 in the real one) and its code
    builds only a causal mask: no layer slides. Mistral's code builds the sliding mask: every
    layer slides by its config's window."""
    moshi = _tiny("moshi")
    assert moshi.config.get_text_config().sliding_window == 8
    assert not builds_sliding_mask(moshi)
    assert all(layer.window is None for layer in ropescope.inspect_model(moshi).geometry.layers)
    mistral = _tiny("mistral")
    assert builds_sliding_mask(mistral)
    assert [layer.window for layer in ropescope.inspect_model(mistral).geometry.layers] == [8, 8]


def test_moshi_attention_is_the_models_own():
    """With the window no longer applied, the recomputed attention equals Moshi's eager attention."""
    from ropescope.heads.gate import check_attention_rule

    anatomy = ropescope.inspect_model(_tiny("moshi"))
    check_attention_rule(anatomy, torch.tensor([[1, *range(5, 40)]]), tolerance=1e-5)


def test_a_wrapper_around_the_attention_is_not_a_second_layer():
    """DBRX wraps each attention module in a ``norm_attn_norm`` module that knows the same layer
    index: only the inner one is the layer's attention."""
    model = _tiny("dbrx")
    every = [m for m in model.modules() if is_decoder_attention(m)]
    kept = decoder_attention_modules(model)
    assert len(every) == 4 and [type(m).__name__ for m in kept] == ["DbrxAttention", "DbrxAttention"]
    assert [m.layer_idx for m in kept] == [0, 1]


def test_a_vision_tower_numbering_its_layers_too_is_left_to_the_tower():
    """DeepSeek-OCR 2's vision encoder is a Qwen2 stack whose attention knows layer 0 too: the
    decoder layers are the language model's."""
    model = _tiny("deepseek_ocr2")
    kept = decoder_attention_modules(model)
    inside = {id(m) for m in model.get_decoder().modules()}
    assert [m.layer_idx for m in kept] == [0, 1] and all(id(m) in inside for m in kept)
    assert sum(is_decoder_attention(m) for m in model.modules()) == 3


def test_stacks_numbered_alike_are_refused_in_one_line():
    """HRM runs two stacks (its L and H modules) whose layers are both numbered from 0: refused where
    its layers are hooked (inspection alone reads only the buffers)."""
    anatomy = ropescope.inspect_model(_tiny("hrm_text"))
    with pytest.raises(UnsupportedModelError, match="attention stacks number their layers alike"):
        _ = anatomy.sites


def test_a_drafter_is_refused_in_one_line():
    """A model whose forward takes its main model's keys and values (Gemma 4's assistants) is no
    model of text; a plain causal LM passes."""

    class Drafter(torch.nn.Module):
        def forward(self, inputs_embeds=None, shared_kv_states=None):
            return inputs_embeds

    with pytest.raises(UnsupportedModelError, match="drafter for speculative decoding"):
        refuse_drafter(Drafter, "toy_assistant")
    refuse_drafter(type(_tiny("llama")), "llama")


def test_dbrx_values_are_clamped_as_the_model_clamps_them():
    """The tiny DBRX's clip_qkv bites (a third of its fused projection's outputs are clamped), so a
    missing clamp would change its value norms (test_families checks them against a NumPy clamp)."""
    model = _tiny("dbrx")
    assert FILL["dbrx"]["attn_config"]["clip_qkv"] == model.config.attn_config.clip_qkv
    out = []
    handle = model.transformer.blocks[0].norm_attn_norm.attn.Wqkv.register_forward_hook(lambda m, a, o: out.append(o))
    with torch.no_grad():
        model(input_ids=torch.arange(3, 40)[None])
    handle.remove()
    assert (out[0].abs() > model.config.attn_config.clip_qkv).float().mean() > 0.1


def test_mla_sub_configs_keep_their_head_size_relation():
    """Kimi K2.5's text config is DeepSeek V3's (``head_dim`` = the RoPE part): shrunk like a
    top-level MLA config, its head size follows the tiny RoPE part."""
    text = tiny_config("kimi_k25").get_text_config()
    assert text.head_dim == text.qk_rope_head_dim == 8
    assert text.num_key_value_heads == text.num_attention_heads


def test_an_encoder_decoder_is_refused_in_one_line():
    """T5Gemma 2's decoder needs its encoder's output: refused when inspected, with the reason."""
    with pytest.raises(UnsupportedModelError, match="encoder-decoder model"):
        ropescope.inspect_model(_tiny("t5gemma2"))


def test_attention_blocks_shared_across_depths_are_refused_in_one_line():
    """Zamba2 (with its RoPE on) runs one attention module at several depths, the depth handed per
    call (``layer_idx=-1``): refused with the reason, not taken for one layer."""
    from ropescope.survey import TEXTS, CharTokenizer

    with pytest.raises(UnsupportedModelError, match="runs one attention block at several depths"):
        ropescope.profile(_tiny("zamba2"), CharTokenizer(), TEXTS[:1])


def test_an_encoder_with_a_decoder_on_its_cache_is_refused_in_one_line():
    """DiffusionGemma's config says no encoder-decoder, but its denoising decoder attends to the
    encoder's cached keys and values: refused from its attention modules, with the reason."""
    with pytest.raises(UnsupportedModelError, match="pairs an encoder with a decoder reading its cache"):
        ropescope.inspect_model(_tiny("diffusion_gemma"))


def test_gptj_frequencies_and_p_rope_are_its_own():
    """GPT-J keeps no ``inv_freq``: its frequencies are read off its sin/cos table, equal to the
    float32 ``10000^(-2i/rotary_dim)`` its code builds the table from; under p-RoPE at p = 0.5 each
    of its RoPE calls (key first, then query, ``[B, S, H, D]``) turns interleaved pairs by the faster
    half of those frequencies and not at all by the slower half (recomputed here in NumPy)."""
    import functools

    import numpy as np
    import transformers.models.gptj.modeling_gptj as code

    model = _tiny("gptj")
    r = model.config.rotary_dim
    own = (1.0 / (10000 ** (torch.arange(0, r, 2, dtype=torch.int64) / r))).numpy()
    read = ropescope.inspect_model(model).geometry.frequencies(0)
    assert np.array_equal(np.asarray(read, dtype=np.float32), own)
    calls, original = [], code.apply_rotary_pos_emb

    @functools.wraps(original)
    def recording(tensor, sin, cos):
        out = original(tensor, sin, cos)
        calls.append((tensor.detach().double().numpy(), out.detach().double().numpy()))
        return out

    ids = torch.tensor([[1, *range(5, 30)]])
    code.apply_rotary_pos_emb = recording
    try:
        with torch.no_grad(), ropescope.p_rope(model, 0.5):
            model(input_ids=ids, use_cache=False)
    finally:
        code.apply_rotary_pos_emb = original
    g = own.astype(np.float64)
    g[len(g) // 2 :] = 0.0
    angles = np.arange(ids.shape[1])[:, None] * g  # [S, pairs]
    cos, sin = np.cos(angles)[None, :, None, :], np.sin(angles)[None, :, None, :]
    calls = [c for c in calls if c[0].shape[1] == ids.shape[1]]  # not ropescope's probes of the function
    assert len(calls) == 2 * model.config.n_layer
    for before, after in calls:
        even, odd = before[..., 0::2], before[..., 1::2]
        expected = np.stack([even * cos - odd * sin, odd * cos + even * sin], axis=-1).reshape(before.shape)
        assert np.allclose(after, expected, rtol=1e-4, atol=1e-5)


def test_routed_query_heads_are_refused_in_one_line():
    """JetMoE picks each token's query heads from attention experts: no fixed head to measure."""
    anatomy = ropescope.inspect_model(_tiny("jetmoe"))
    with pytest.raises(UnsupportedModelError, match="mixture of attention heads"):
        _ = anatomy.sites


def test_linear_attention_layers_are_other_layers_not_nope():
    """MiniMax's lightning (linear-attention) layer has an attention module with a layer index but no
    softmax over q.k: it is another kind of layer, not a NoPE layer."""
    geometry = ropescope.inspect_model(_tiny("minimax")).geometry
    assert geometry.layers[0].attention and geometry.layers[0].rope
    assert not geometry.layers[1].attention and not geometry.nope_layers

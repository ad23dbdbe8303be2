"""Gemma 4's way of applying RoPE: q and k rotated in separate calls on [batch, tokens, heads, dims],
proportional RoPE on global layers (a quarter of the pairs rotate, at theta^(-2i/head_dim), the rest
not at all). What ropescope cannot measure yet (heads of different sizes per layer, KV sharing,
K = V) is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_helpers import assert_no_output, assert_one_line_error, run_cli
from hub_stand_in import char_tokenizer

import ropescope
from ropescope.errors import UnsupportedModelError
from ropescope.families import TEXTS, VARIANTS, CharTokenizer, tiny_model

ONE_SIZE = VARIANTS["gemma4_text (one head size)"][1]


def _gemma4(**overrides):
    return tiny_model("gemma4_text", {**ONE_SIZE, "head_dim": 64, **overrides})


def test_global_layers_rotate_a_quarter_of_their_pairs():
    geometry = ropescope.inspect_model(_gemma4()).geometry
    sliding, full = geometry.layers[0], geometry.layers[1]
    assert (sliding.layer_type, full.layer_type) == ("sliding_attention", "full_attention")
    i = np.arange(32)
    assert np.allclose(sliding.inv_freq, 10_000.0 ** (-2 * i / 64), rtol=1e-6)
    expected = np.where(i < 8, 1_000_000.0 ** (-2 * i / 64), 0.0)  # 1/4 of 32 pairs; head dim as denominator
    assert np.allclose(full.inv_freq, expected, rtol=1e-6, atol=0)
    assert geometry.semantic_boundary(1, 10) <= 8  # the 24 unrotated pairs are on the semantic side


def test_profile_and_heads_are_exact_on_separate_rope_calls():
    model = _gemma4()
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    assert (prof.stats["q"].count > 0).all() and (prof.stats["k"].count > 0).all()
    report = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=1)  # gated against eager
    assert len(report.table) == 2 * 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_interventions_reach_separate_rope_calls(dtype):
    model = _gemma4().to(dtype)
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=ids, use_cache=False).logits
        with ropescope.p_rope(model, 1.0):
            assert torch.equal(base, model(input_ids=ids, use_cache=False).logits)
        with ropescope.p_rope(model, 0.25) as reached:
            changed = model(input_ids=ids, use_cache=False).logits
        assert sorted(reached) == [0, 1] and not torch.equal(base, changed)
        with ropescope.ablate_chunks(model, {(1, 0): [0, 1]}, tensors=("k",)):
            assert not torch.equal(base, model(input_ids=ids, use_cache=False).logits)
        assert torch.equal(base, model(input_ids=ids, use_cache=False).logits)


def test_what_is_not_measured_yet_is_refused(tmp_path):
    shared = _gemma4(
        num_hidden_layers=4, layer_types=["sliding_attention", "full_attention"] * 2, num_kv_shared_layers=2
    )
    with pytest.raises(UnsupportedModelError, match="reuses another layer's keys and values"):
        ropescope.profile(shared, CharTokenizer(), list(TEXTS))
    k_eq_v = _gemma4(attention_k_eq_v=True)
    with pytest.raises(UnsupportedModelError, match=r"uses its keys as values \(K = V"):
        ropescope.profile(k_eq_v, CharTokenizer(), list(TEXTS))
    directory = tmp_path / "gemma4"
    tiny_model("gemma4_text").save_pretrained(directory)  # global heads twice the size, as in Gemma 4
    char_tokenizer(directory)
    out = tmp_path / "run"
    result = run_cli("profile", str(directory), "--out", str(out), "--max-tokens", "16")
    assert_one_line_error(result, "sets head_dim per layer (as Gemma 4's global layers do)")
    assert_no_output(out)

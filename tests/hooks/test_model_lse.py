"""Head scores take each row's softmax normaliser from the model's own attention kernel (CPU flash
attention) where it computes one: the model's outputs stay bit-identical, every layer's normaliser
comes from the kernel, and the scores equal those with the normaliser recomputed; anything the
kernel does not cover (eager attention, half precision) recomputes it; the wrapped function always
comes back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.heads.scores import HeadScoreReducer
from ropescope.hooks.reducers import fan_out
from ropescope.model.anatomy import inspect_model

ORIGINAL = F.scaled_dot_product_attention


def _scan(model, prompts, model_lse: bool):
    anatomy = inspect_model(model)
    reducer = HeadScoreReducer(anatomy.geometry, anatomy.logit_rules, anatomy.n_heads, 4)
    outputs = []
    with (
        torch.no_grad(),
        ropescope.capture(model, on_qk=fan_out(anatomy, [reducer]), tensors=(), model_lse=model_lse) as cap,
    ):
        for ids in prompts:
            outputs.append(anatomy.base(input_ids=ids).last_hidden_state)
        counts = (cap._model_lse.used, cap._model_lse.recomputed) if cap._model_lse is not None else None
    assert F.scaled_dot_product_attention is ORIGINAL
    return reducer.arrays, outputs, counts


def _prompts(model):
    return [torch.tensor([CharTokenizer()(t)["input_ids"]]) for t in TEXTS]


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen3", "mistral", "phi", "cohere"])
def test_the_kernels_normaliser_gives_the_same_scores_and_outputs(family):
    model = tiny_model(family)
    model.set_attn_implementation("sdpa")
    prompts = _prompts(model)
    with torch.no_grad():
        plain = [model.model(input_ids=ids).last_hidden_state for ids in prompts]
    fast, outputs, counts = _scan(model, prompts, model_lse=True)
    slow, _, none = _scan(model, prompts, model_lse=False)
    assert none is None
    if family == "phi":  # partial rotary: attention gets q_rot and the unrotated dims joined anew
        assert counts == (0, 3 * len(prompts))  # not the q the reducers saw: recomputed, never guessed
    else:
        assert counts == (3 * len(prompts), 0)  # every layer of every prompt from the kernel
    assert all(torch.equal(a, b) for a, b in zip(outputs, plain, strict=True))  # the model computes the same
    np.testing.assert_allclose(fast.offset_scores(), slow.offset_scores(), atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(fast.sink_scores(), slow.sink_scores(), atol=1e-7, equal_nan=True)
    for got, expected in zip(fast.target_attribution(), slow.target_attribution(), strict=True):
        np.testing.assert_array_equal(got, expected)  # attribution does not use the normaliser


def test_eager_attention_and_half_precision_recompute_it():
    eager = tiny_model("llama")  # eager attention: no kernel to ask
    _, _, counts = _scan(eager, _prompts(eager), model_lse=True)
    assert counts == (0, 3 * len(TEXTS))
    half = tiny_model("llama", dtype=torch.bfloat16)
    half.set_attn_implementation("sdpa")
    _, _, counts = _scan(half, _prompts(half), model_lse=True)
    assert counts == (0, 3 * len(TEXTS))


def test_the_wrapped_function_comes_back_after_an_error():
    model = tiny_model("llama")
    model.set_attn_implementation("sdpa")
    anatomy = inspect_model(model)
    reducer = HeadScoreReducer(anatomy.geometry, anatomy.logit_rules, anatomy.n_heads, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with ropescope.capture(model, on_qk=fan_out(anatomy, [reducer]), tensors=()):
            assert F.scaled_dot_product_attention is not ORIGINAL
            raise RuntimeError("boom")
    assert F.scaled_dot_product_attention is ORIGINAL


@pytest.mark.real
def test_real_gemma_head_scores_from_the_kernel(gemma):
    ids = gemma.tokenizer(ropescope.load_prompts("shakespeare")[0], return_tensors="pt")["input_ids"][:, :200]
    with torch.no_grad():
        plain = gemma.model.model(input_ids=ids).last_hidden_state
    fast, outputs, counts = _scan(gemma.model, [ids], model_lse=True)
    slow, _, _ = _scan(gemma.model, [ids], model_lse=False)
    assert counts == (18, 0)
    assert torch.equal(outputs[0], plain)
    np.testing.assert_allclose(fast.offset_scores(), slow.offset_scores(), atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(fast.sink_scores(), slow.sink_scores(), atol=1e-6, equal_nan=True)

"""transformers 5.25 with its ``kernels`` dependency turns each family's module-level
``apply_rotary_pos_emb`` into an ``nn.Module`` instance whose ``forward(*args, **kwargs)`` calls the
original (kernels' ``use_kernel_forward_from_hub`` on a function). ropescope reads the call shape off
the original and wraps the instance: the profile equals the plain function's, bit for bit, and the
modeling module keeps its instance after the capture."""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.llama import modeling_llama

import ropescope
from ropescope.model.families import plain_function, rope_call_kind
from ropescope.survey import TEXTS, CharTokenizer, tiny_model


def _as_kernels_makes_it(func):
    """An instance shaped as kernels 0.19's ``_create_func_module(func)()``: the function in the
    closure of the class's ``forward``, the signature ``(*args, **kwargs)``."""

    class Func(torch.nn.Module):
        def forward(self, *args, **kwargs):
            return func(*args, **kwargs)

    return Func()


def _profile(model) -> np.ndarray:
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS))
    return prof.frame().sort_values(["tensor", "layer", "head", "chunk"])["mean_norm"].to_numpy()


def test_a_kernel_wrapped_rope_function_profiles_like_the_plain_one(monkeypatch):
    model = tiny_model("llama")
    plain = _profile(model)
    wrapped = _as_kernels_makes_it(modeling_llama.apply_rotary_pos_emb)
    assert plain_function(wrapped) is modeling_llama.apply_rotary_pos_emb
    assert rope_call_kind(wrapped) == "pair"
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", wrapped)
    np.testing.assert_array_equal(_profile(tiny_model("llama")), plain)
    assert modeling_llama.apply_rotary_pos_emb is wrapped  # the model's own object is back after the capture


def test_an_object_without_a_signature_is_no_rope_function():
    assert rope_call_kind(torch.nn.Identity()) is None
    assert rope_call_kind(len) is None


def test_a_tested_family_that_cannot_be_hooked_is_never_called_supported(monkeypatch):
    """A transformers that changes how a tested family applies RoPE: the refusal says which
    transformers the family was tested with, and never lists the refused family as supported."""
    import pytest
    import transformers

    from ropescope.errors import UnsupportedModelError
    from ropescope.version import TESTED_TRANSFORMERS

    original = modeling_llama.apply_rotary_pos_emb
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", lambda *args, **kwargs: original(*args, **kwargs))
    with pytest.raises(UnsupportedModelError) as caught:
        ropescope.profile(tiny_model("llama"), CharTokenizer(), list(TEXTS))
    message = str(caught.value)
    assert "cannot hook" in message and f"tested with transformers {TESTED_TRANSFORMERS}" in message
    assert f"with transformers {transformers.__version__}" in message
    assert "supported" not in message and "\n" not in message

"""Rope scaling at inference equals a checkpoint configured with that scaling, bit for bit, and
leaves the model exactly as it was; what cannot be done exactly is refused in one line."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from tiny import COMMON, FAMILIES, TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError, UnsupportedModelError
from ropescope.model.rope_scaling import parse_rope_scaling, rope_scaling

CONTEXT = 256  # the tiny models' max_position_embeddings


def _configured(family: str, kind: str, factor: float, model) -> torch.nn.Module:
    """The reference: the same weights in a model whose config names the scaling (transformers' path)."""
    params = copy.deepcopy(model.config.rope_parameters)
    extra = {"original_max_position_embeddings": CONTEXT} if kind in ("yarn", "llama3") else {}
    if kind == "llama3":
        extra |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}

    def scaled(p):
        return dict(p, rope_type=kind, factor=factor, **extra)

    per_type = all(isinstance(v, dict) for v in params.values())
    new = {t: scaled(p) for t, p in params.items()} if per_type else scaled(params)
    name, extra, _, _ = FAMILIES[family]
    config = getattr(transformers, name)(
        **{**COMMON, **extra, "rope_parameters": new, "max_position_embeddings": int(CONTEXT * factor)}
    )
    config._attn_implementation = "eager"
    reference = transformers.AutoModelForCausalLM.from_config(config).eval()
    reference.load_state_dict(model.state_dict())
    return reference


def _hidden(model, ids):
    with torch.no_grad():
        return model.model(input_ids=ids).last_hidden_state


@pytest.mark.parametrize(
    "family, scaling", [("llama", "linear:2"), ("llama", "yarn:4"), ("qwen3", "llama3:8"), ("gemma3", "yarn:2")]
)
def test_scaled_model_equals_a_checkpoint_configured_with_it(family, scaling):
    model = tiny_model(family)
    kind, factor = parse_rope_scaling(scaling)
    reference = _configured(family, kind, factor, model)
    ids = torch.tensor([CharTokenizer()(TEXTS[0] * 3)["input_ids"]])
    before = _hidden(model, ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with rope_scaling(model, scaling) as scaled:
        assert torch.equal(_hidden(scaled, ids), _hidden(reference, ids))
        geometry = ropescope.read_geometry(scaled)
        expected = ropescope.read_geometry(reference)
        for ours, theirs in zip(geometry.layers, expected.layers, strict=True):
            np.testing.assert_array_equal(ours.inv_freq, theirs.inv_freq)
            assert ours.attention_scaling == theirs.attention_scaling
        assert ropescope.inspect_model(scaled).context_length == int(CONTEXT * factor)
        prof = ropescope.profile(scaled, CharTokenizer(), TEXTS)
    ref_prof = ropescope.profile(reference, CharTokenizer(), TEXTS)
    for tensor in "qkv":
        np.testing.assert_array_equal(prof.stats[tensor].mean.numpy(), ref_prof.stats[tensor].mean.numpy())
    assert prof.geometry.layers[0].inv_freq.tolist() != ropescope.read_geometry(model).layers[0].inv_freq.tolist()
    # restored: the same outputs, weights, geometry and context
    assert torch.equal(_hidden(model, ids), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert ropescope.inspect_model(model).context_length == CONTEXT


def test_a_loaded_model_sees_the_scaled_anatomy_inside_only():
    lm = ropescope.model.LoadedModel("tiny", tiny_model("llama"), CharTokenizer())
    plain = lm.anatomy
    with rope_scaling(lm, "linear:4"):
        assert lm.anatomy is not plain and lm.anatomy.context_length == 4 * CONTEXT
        np.testing.assert_allclose(lm.anatomy.geometry.layers[0].inv_freq, plain.geometry.layers[0].inv_freq / 4)
    assert lm.anatomy is plain


def test_restored_after_an_error_inside():
    model = tiny_model("llama")
    rotary = model.model.rotary_emb
    with pytest.raises(KeyError):
        with rope_scaling(model, "yarn:2"):
            assert model.model.rotary_emb is not rotary
            raise KeyError("boom")
    assert model.model.rotary_emb is rotary and model.config.max_position_embeddings == CONTEXT
    assert model.config.rope_parameters.get("rope_type", "default") == "default"


@pytest.mark.parametrize(
    "text, message",
    [
        ("dynamic:2", "changes the frequencies with each prompt's length"),
        ("longrope:2", "per-dimension factors come from training"),
        ("ntk:2", "unknown rope scaling"),
        ("yarn", "needs a factor"),
        ("yarn:0.5", "above 1"),
        ("linear:nan", "above 1"),
    ],
)
def test_what_cannot_be_exact_is_refused(text, message):
    with pytest.raises(RopescopeError, match=message):
        parse_rope_scaling(text)


def test_an_already_scaled_model_is_refused():
    model = _configured("llama", "linear", 2.0, tiny_model("llama"))
    with pytest.raises(UnsupportedModelError, match="already 'linear'"):
        with rope_scaling(model, "yarn:2"):
            pass


@pytest.mark.real
def test_profile_of_the_bundled_model_with_yarn_from_the_command_line(tmp_path):
    """End to end on Gemma 3 270M: the profile names the scaling, its geometry is transformers' own
    YaRN (every layer type's frequencies, its attention factor), and prompts past the trained
    context are allowed."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cli_helpers import run_cli
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    out = tmp_path / "run"
    result = run_cli("profile", "--rope-scaling", "yarn:2", "--max-tokens", "48", "--out", str(out))
    assert result.returncode == 0, result.stderr
    prof = ropescope.load_profile(out / "profile.safetensors")
    assert prof.meta["model_id"] == "gemma-3-270m (yarn x2)"
    assert prof.meta["context_length"] == 2 * 32768
    lm = ropescope.load_model("gemma-3-270m")
    config = copy.deepcopy(lm.model.config)
    for layer_type in ("sliding_attention", "full_attention"):
        params = dict(config.rope_parameters[layer_type], rope_type="yarn", factor=2.0)
        config.rope_parameters[layer_type] = dict(params, original_max_position_embeddings=32768)
        inv_freq, scaling = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu", layer_type=layer_type)
        layer = config.layer_types.index(layer_type)
        np.testing.assert_allclose(prof.geometry.layers[layer].inv_freq, inv_freq.numpy(), rtol=1e-7)
        assert prof.geometry.layers[layer].attention_scaling == pytest.approx(scaling)
        assert scaling > 1.0


def test_one_layer_type_only_equals_a_checkpoint_configured_so():
    """Gemma 3 4B-27B ship linear x8 on their global layers only: ``full_attention=linear:8``."""
    model = tiny_model("gemma3")
    params = copy.deepcopy(model.config.rope_parameters)
    params["full_attention"] = dict(params["full_attention"], rope_type="linear", factor=8.0)
    name, extra, _, _ = FAMILIES["gemma3"]
    config = getattr(transformers, name)(
        **{**COMMON, **extra, "rope_parameters": params, "max_position_embeddings": 8 * CONTEXT}
    )
    config._attn_implementation = "eager"
    reference = transformers.AutoModelForCausalLM.from_config(config).eval()
    reference.load_state_dict(model.state_dict())
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])
    plain = ropescope.read_geometry(model)
    with rope_scaling(model, "full_attention=linear:8") as scaled:
        assert torch.equal(_hidden(scaled, ids), _hidden(reference, ids))
        geometry = ropescope.read_geometry(scaled)
        for layer, layer_type in enumerate(model.config.layer_types):
            expected = plain.layers[layer].inv_freq / (8 if layer_type == "full_attention" else 1)
            np.testing.assert_allclose(geometry.layers[layer].inv_freq, expected, rtol=1e-6)
    lm = ropescope.model.LoadedModel("tiny", tiny_model("llama"), CharTokenizer())
    with pytest.raises(RopescopeError, match="one RoPE for every layer"):
        with rope_scaling(lm, "full_attention=linear:2"):
            pass
    with pytest.raises(RopescopeError, match="no layer type 'global'"):
        with rope_scaling(model, "global=linear:2"):
            pass

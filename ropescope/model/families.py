"""Where each architecture family keeps what ropescope hooks.

ropescope reads q and k where the model itself applies RoPE: every Hugging Face family listed here
calls a module-level ``apply_rotary_pos_emb(q, k, cos, sin, ...)`` on tensors laid out
``[batch, heads, tokens, dims]`` after any QK-norm. Values come from the output of the layer's value
projection. One small entry per family says what differs; everything else is shared.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

import torch

from ropescope.errors import UnsupportedModelError


@dataclass(frozen=True)
class FamilyAdapter:
    """What differs between families: the RoPE pair layout and the value projection's name."""

    layout: str = "halves"
    value_module: str = "v_proj"


DEFAULT = FamilyAdapter()

# Families whose modeling code ropescope has been tested against (tests/tiny.py builds one of each).
FAMILIES: dict[str, FamilyAdapter] = {
    "gemma": DEFAULT,
    "gemma2": DEFAULT,
    "gemma3": DEFAULT,
    "gemma3_text": DEFAULT,
    "llama": DEFAULT,
    "mistral": DEFAULT,
    "qwen2": DEFAULT,
    "qwen3": DEFAULT,
    "phi": DEFAULT,
    "olmo2": DEFAULT,
    "cohere": FamilyAdapter(layout="interleaved"),
    "glm": FamilyAdapter(layout="interleaved"),
}


def family_adapter(model_type: str) -> FamilyAdapter:
    """The adapter of ``model_type``; unknown families get the Hugging Face default (halves)."""
    return FAMILIES.get(model_type, DEFAULT)


def text_config(model: torch.nn.Module):
    """The language-model config (``text_config`` of multimodal wrappers)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


@dataclass(frozen=True)
class AttentionSite:
    """One attention layer: its module, 0-based index, and the modeling module it calls RoPE from."""

    layer: int
    module: torch.nn.Module
    code_module: object


def attention_sites(model: torch.nn.Module) -> list[AttentionSite]:
    """Every attention layer of ``model`` whose code applies RoPE through ``apply_rotary_pos_emb``.

    Raises :class:`UnsupportedModelError` when the layers cannot be hooked.
    """
    cfg = text_config(model)
    sites = []
    for _, module in model.named_modules():
        if "Attention" not in type(module).__name__ or not hasattr(module, "layer_idx"):
            continue
        code = sys.modules.get(type(module).__module__)
        fn = getattr(code, "apply_rotary_pos_emb", None)
        if fn is None or list(inspect.signature(fn).parameters)[:4] != ["q", "k", "cos", "sin"]:
            raise UnsupportedModelError(
                f"model type {cfg.model_type!r} applies RoPE in a way ropescope cannot hook; "
                f"supported families: {', '.join(sorted(FAMILIES))}"
            )
        sites.append(AttentionSite(int(module.layer_idx), module, code))
    if len(sites) != int(cfg.num_hidden_layers):
        raise UnsupportedModelError(
            f"found {len(sites)} attention layers in model type {cfg.model_type!r}, expected "
            f"{cfg.num_hidden_layers}; supported families: {', '.join(sorted(FAMILIES))}"
        )
    return sorted(sites, key=lambda s: s.layer)


def value_module(site: AttentionSite, model_type: str) -> torch.nn.Module:
    """The value projection of one attention layer (its output is ``[batch, tokens, kv_heads*d]``)."""
    name = family_adapter(model_type).value_module
    module = getattr(site.module, name, None)
    if module is None:
        raise UnsupportedModelError(f"layer {site.layer} of model type {model_type!r} has no value projection {name!r}")
    return module

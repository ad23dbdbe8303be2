"""Which attention layers apply no RoPE at all (NoPE layers), found by watching the model run.

SmolLM3 and Mistral Large 3 skip RoPE on every fourth layer (``no_rope_layers``), Cohere 2 /
Command R7B on its global layers, Granite-SWA where the model passes no position embeddings.
Rather than one rule per family, :func:`layers_without_rope` runs four tokens through the model
once, with the modeling module's ``apply_rotary_pos_emb`` wrapped to note which attention layer
called it, and returns the layers that never did. Nothing of the model changes: the wrapper and
hooks are removed before it returns, also after an error.

A NoPE layer is a built-in control, not an error: its q and k are read where they are made, as
the attention uses them: the output of its QK-norm (``q_norm``/``k_norm``: EXAONE 4, AFMoE; one
``qk_norm`` called on q then k, the query times its ``qk_scale_factor``: MuSE) where it has one, else
of ``q_proj`` and ``k_proj``. Those outputs come as ``[batch, tokens, heads *
dims]``, ``[batch, tokens, heads, dims]`` or ``[batch, heads, tokens, dims]``; which one is read off
the probe, whose length differs from every head count (:func:`nope_layout`).
"""

from __future__ import annotations

import re
import weakref

import torch

from ropescope.errors import UnsupportedModelError
from ropescope.model.families import config_value, decoder_without_head, forward_source

PROBE_TOKENS = 4


_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its NoPE layers, found once


def layers_without_rope(model: torch.nn.Module, sites) -> set[int]:
    """The layers of ``sites`` (:class:`~ropescope.model.families.AttentionSite`) whose forward pass
    never calls ``apply_rotary_pos_emb`` on a :data:`PROBE_TOKENS`-token input. Found once per
    model object (which layers rotate is a matter of code and config, not of weights), so a model
    inspected again while ropescope's hooks are on it is not run again under them."""
    return set(_found(model, sites)[1])


def rope_functions_called(model: torch.nn.Module, sites) -> dict[int, set[str]]:
    """Which of its RoPE functions each layer of ``sites`` called on the probe (DeepSeek V3 names
    two and calls one, as ``rope_interleave`` says)."""
    return _found(model, sites)[3]


def _found(model, sites):
    key = frozenset(site.layer for site in sites)
    known = _FOUND.get(model)
    if known is None or known[0] != key:
        found, layouts, functions = _probe(model, sites)
        known = _FOUND[model] = (key, frozenset(found), layouts, functions)
    return known


def nope_layout(model: torch.nn.Module, layer: int) -> dict[str, str]:
    """How the q and k read on NoPE ``layer`` are laid out: ``{"q": ..., "k": ...}`` with
    ``"flat"`` (``[B, S, H*D]``), ``"bshd"`` or ``"bhsd"``."""
    known = _FOUND.get(model)
    if known is None or layer not in known[2]:
        raise UnsupportedModelError(f"layer {layer}: the layout of its q and k was not read (inspect the model first)")
    return known[2][layer]


def _probe_length(model: torch.nn.Module) -> int:
    """A probe length equal to no head count, so the token axis of a [B, ?, ?, D] tensor is unambiguous."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = {config_value(config, key) for key in ("num_attention_heads", "num_key_value_heads")}
    for layer_config in config_value(config, "per_layer_config") or ():  # Gemma 4: per-layer KV heads
        heads.add(getattr(layer_config, "num_key_value_heads", None))
    length = PROBE_TOKENS
    while length in heads:
        length += 1
    return length


def _layout(shape: tuple, seq: int) -> str | None:
    if len(shape) == 3 and shape[1] == seq:
        return "flat"
    if len(shape) == 4 and shape[1] == seq:
        return "bshd"
    if len(shape) == 4 and shape[2] == seq:
        return "bhsd"
    return None


def hooks_installed(sites) -> bool:
    """Whether ropescope's RoPE hooks are installed on the modeling code of ``sites`` (a forward pass
    now would feed them)."""
    return any(
        getattr(getattr(site.code_module, name, None), "ropescope_hooks", False)
        for site in sites
        for name in site.rope_functions
    )


@torch.no_grad()
def _probe(model: torch.nn.Module, sites) -> tuple[set[int], dict[int, dict[str, str]], dict[int, set[str]]]:
    if not sites:
        return set(), {}, {}
    if hooks_installed(sites):
        raise UnsupportedModelError(
            "this model was first inspected while ropescope's hooks were installed on it; call "
            "ropescope.inspect_model(model) once before capturing or intervening"
        )
    called: set[int] = set()
    functions: dict[int, set[str]] = {}
    current: list[int | None] = [None]
    handles, patched = [], {}
    for site in sites:
        handles.append(
            site.module.register_forward_pre_hook(lambda m, a, layer=site.layer: current.__setitem__(0, layer))
        )
        handles.append(site.module.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))
    for site in sites:
        code = site.code_module
        for name in site.rope_functions:
            if (id(code), name) in patched:
                continue
            original = getattr(code, name)
            patched[(id(code), name)] = (code, name, original)

            def noting(*args, _original=original, _name=name, **kwargs):
                if current[0] is not None:
                    called.add(current[0])
                    functions.setdefault(current[0], set()).add(_name)
                return _original(*args, **kwargs)

            setattr(code, name, noting)
    shapes: dict[int, dict[str, tuple]] = {}
    for site in sites:
        for kind, module in zip("qk", _qk_modules(site), strict=True):
            if module is not None:
                handles.append(
                    module.register_forward_hook(
                        lambda m, a, o, layer=site.layer, kind=kind: shapes.setdefault(layer, {}).__setitem__(
                            kind, tuple(o.shape)
                        )
                    )
                )
    length = _probe_length(model)
    try:
        embeddings = model.get_input_embeddings()
        vocab = int(getattr(embeddings, "num_embeddings", 8) or 8)
        device = embeddings.weight.device
        ids = (torch.arange(1, length + 1, device=device) % vocab)[None]
        decoder_without_head(model)(input_ids=ids, use_cache=False)  # no logits needed
    finally:
        for code, name, original in patched.values():
            setattr(code, name, original)
        for handle in handles:
            handle.remove()
    nope = {site.layer for site in sites} - called
    layouts = {}
    for layer in nope:
        seen = shapes.get(layer, {})
        layouts[layer] = {kind: _layout(seen[kind], length) for kind in seen}
    return nope, layouts, functions


def _qk_modules(site) -> tuple:
    """The modules whose outputs are a layer's q and k as its attention uses them when it applies
    no RoPE: its QK-norm where it has one (both of them), else its projections (``None`` if absent)."""
    module = site.module
    norms = [getattr(module, name, None) for name in ("q_norm", "k_norm")]
    if all(isinstance(n, torch.nn.Module) for n in norms):
        return tuple(norms)
    if shared_qk_norm(module) is not None:
        return module.qk_norm, module.qk_norm
    projections = [getattr(module, name, None) for name in ("q_proj", "k_proj")]
    return tuple(p if isinstance(p, torch.nn.Module) else None for p in projections)


def shared_qk_norm(module: torch.nn.Module) -> torch.nn.Module | None:
    """The one norm module a layer calls on its query and then on its key (MuSE's ``qk_norm``), read
    off its ``forward`` (``self.qk_norm(query...`` before ``self.qk_norm(key...``); None elsewhere."""
    norm = getattr(module, "qk_norm", None)
    if not isinstance(norm, torch.nn.Module):
        return None
    source = forward_source(module)
    q_at = re.search(r"self\.qk_norm\(\s*q", source)
    k_at = re.search(r"self\.qk_norm\(\s*k", source)
    return norm if q_at and k_at and q_at.start() < k_at.start() else None


def query_factor(module: torch.nn.Module) -> float | None:
    """The constant a layer multiplies its normed query by before attention (MuSE:
    ``self.qk_norm(query_states) * self.qk_scale_factor``), read off its ``forward``; None elsewhere."""
    factor = getattr(module, "qk_scale_factor", None)
    if isinstance(factor, (int, float)) and re.search(r"\)\s*\*\s*self\.qk_scale_factor", forward_source(module)):
        return float(factor)
    return None


def nope_projections(site) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The modules whose outputs are the q and k a NoPE layer's attention uses (its QK-norm, else its
    projections). Raises :class:`UnsupportedModelError` where there are none to read, or where
    the layer normalises only one of them or names its norms otherwise."""
    module = site.module
    q_module, k_module = _qk_modules(site)
    if q_module is None or k_module is None:
        raise UnsupportedModelError(f"layer {site.layer} applies no RoPE and has no q_proj/k_proj to read q and k from")
    for name in ("q_layernorm", "k_layernorm"):
        if getattr(module, name, None) is not None:
            raise UnsupportedModelError(
                f"layer {site.layer} applies no RoPE and normalises q and k ({name}) where ropescope cannot read them"
            )
    if (getattr(module, "q_norm", None) is None) != (getattr(module, "k_norm", None) is None):
        raise UnsupportedModelError(f"layer {site.layer} applies no RoPE and normalises only one of q and k")
    return q_module, k_module

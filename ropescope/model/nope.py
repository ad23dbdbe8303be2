"""Which attention layers apply no RoPE at all (NoPE layers), found by watching the model run.

SmolLM3 and Mistral Large 3 skip RoPE on every fourth layer (``no_rope_layers``), Cohere 2 /
Command R7B on its global layers, Granite-SWA where the model passes no position embeddings.
Rather than one rule per family, :func:`layers_without_rope` runs four tokens through the model
once, with the modeling module's ``apply_rotary_pos_emb`` wrapped to note which attention layer
called it, and returns the layers that never did. Nothing of the model changes: the wrapper and
hooks are removed before it returns, also after an error.

A NoPE layer is a built-in control, not an error: its q and k are read where they are made (the
output of ``q_proj`` and ``k_proj``, which the attention uses as they are; a layer that normalises
or transforms them in between is refused by :func:`nope_projections`).
"""

from __future__ import annotations

import weakref

import torch

from ropescope.errors import UnsupportedModelError

PROBE_TOKENS = 4


_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its NoPE layers, found once


def layers_without_rope(model: torch.nn.Module, sites) -> set[int]:
    """The layers of ``sites`` (:class:`~ropescope.model.families.AttentionSite`) whose forward pass
    never calls ``apply_rotary_pos_emb`` on a :data:`PROBE_TOKENS`-token input. Found once per
    model object (which layers rotate is a matter of code and config, not of weights), so a model
    inspected again while ropescope's hooks are on it is not run again under them."""
    key = frozenset(site.layer for site in sites)
    known = _FOUND.get(model)
    if known is not None and known[0] == key:
        return set(known[1])
    found = _probe(model, sites)
    _FOUND[model] = (key, frozenset(found))
    return found


@torch.no_grad()
def _probe(model: torch.nn.Module, sites) -> set[int]:
    if not sites:
        return set()
    if any(getattr(site.code_module.apply_rotary_pos_emb, "ropescope_hooks", False) for site in sites):
        raise UnsupportedModelError(
            "this model was first inspected while ropescope's hooks were installed on it; call "
            "ropescope.inspect_model(model) once before capturing or intervening"
        )
    called: set[int] = set()
    current: list[int | None] = [None]
    handles, patched = [], {}
    for site in sites:
        handles.append(
            site.module.register_forward_pre_hook(lambda m, a, layer=site.layer: current.__setitem__(0, layer))
        )
        handles.append(site.module.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))
    for site in sites:
        code = site.code_module
        if id(code) in patched:
            continue
        original = code.apply_rotary_pos_emb
        patched[id(code)] = (code, original)

        def noting(*args, _original=original, **kwargs):
            if current[0] is not None:
                called.add(current[0])
            return _original(*args, **kwargs)

        code.apply_rotary_pos_emb = noting
    try:
        embeddings = model.get_input_embeddings()
        vocab = int(getattr(embeddings, "num_embeddings", 8) or 8)
        device = embeddings.weight.device
        ids = (torch.arange(1, PROBE_TOKENS + 1, device=device) % vocab)[None]
        model(input_ids=ids, use_cache=False)
    finally:
        for code, original in patched.values():
            code.apply_rotary_pos_emb = original
        for handle in handles:
            handle.remove()
    return {site.layer for site in sites} - called


def nope_projections(site) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The query and key projections of a NoPE layer, whose outputs are the q and k its attention
    uses. Raises :class:`UnsupportedModelError` where the layer changes them in between (QK-norm)."""
    module = site.module
    q_proj, k_proj = getattr(module, "q_proj", None), getattr(module, "k_proj", None)
    if not isinstance(q_proj, torch.nn.Module) or not isinstance(k_proj, torch.nn.Module):
        raise UnsupportedModelError(f"layer {site.layer} applies no RoPE and has no q_proj/k_proj to read q and k from")
    for name in ("q_norm", "k_norm", "q_layernorm", "k_layernorm"):
        if getattr(module, name, None) is not None:
            raise UnsupportedModelError(
                f"layer {site.layer} applies no RoPE and normalises q and k ({name}) after projecting them, "
                "where ropescope cannot read them"
            )
    return q_proj, k_proj

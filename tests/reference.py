"""Slow, obviously-correct recomputation of chunk-norm statistics, for checking ropescope.

It re-derives q, k and v of every layer from the attention module's input hidden states and its
weights (projections, then any QK-norm), cuts the rotary dims into chunks with an explicit loop
over the pair layout the test states, and averages in NumPy float64 over the real tokens.
It shares no code with ropescope's capture path.
"""

from __future__ import annotations

import numpy as np
import torch


def attention_inputs(model, batch):
    """Run ``batch`` through ``model`` and return each attention layer's input hidden states."""
    found = {}
    handles = []
    for _, module in model.named_modules():
        if "Attention" in type(module).__name__ and hasattr(module, "layer_idx"):

            def hook(mod, args, kwargs):
                found[mod.layer_idx] = (kwargs.get("hidden_states", args[0] if args else None)).detach().clone()

            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**batch, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return found, {
        m.layer_idx: m for _, m in model.named_modules() if "Attention" in type(m).__name__ and hasattr(m, "layer_idx")
    }


def project(attn, hidden, which: str, n_heads: int, head_dim: int) -> np.ndarray:
    """``[B, S, heads, head_dim]`` float64 of q, k or v recomputed from the module's weights."""
    proj = getattr(attn, f"{which}_proj")
    with torch.no_grad():
        x = proj(hidden).view(hidden.shape[0], hidden.shape[1], n_heads, head_dim)
        norm = getattr(attn, f"{which}_norm", None) if which in ("q", "k") else None
        if norm is not None:
            x = norm(x)
    return x.double().numpy()


def slow_chunk_norms(x: np.ndarray, rotary_dim: int, layout: str) -> np.ndarray:
    """``[..., rotary_dim/2]`` chunk norms by an explicit loop over chunks."""
    out = np.zeros(x.shape[:-1] + (rotary_dim // 2,))
    for chunk in range(rotary_dim // 2):
        a, b = (chunk, chunk + rotary_dim // 2) if layout == "halves" else (2 * chunk, 2 * chunk + 1)
        out[..., chunk] = np.sqrt(x[..., a] ** 2 + x[..., b] ** 2)
    return out


def reference_stats(model, token_rows, rotary_dim, layout, bos_id, include_bos=False, pad_id=0):
    """Per tensor: dict(mean, std, max, rms [L, H, C], count [L]) over real tokens, prompt by prompt."""
    cfg = model.config
    n_heads = cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    values: dict[str, dict[int, list]] = {t: {} for t in "qkv"}
    for row in token_rows:  # one prompt at a time: no padding at all
        ids = torch.tensor([row])
        inputs, modules = attention_inputs(model, {"input_ids": ids})
        keep = np.array([include_bos or t != bos_id for t in row])
        for layer, hidden in inputs.items():
            for which, heads in (("q", n_heads), ("k", n_kv), ("v", n_kv)):
                x = project(modules[layer], hidden, which, heads, head_dim)[0]  # [S, H, D]
                norms = slow_chunk_norms(x[..., :rotary_dim], rotary_dim, layout)[keep]
                values[which].setdefault(layer, []).append(norms)
    out = {}
    for which, per_layer in values.items():
        layers = sorted(per_layer)
        stacked = [np.concatenate(per_layer[i], axis=0) for i in layers]  # [N, H, C]
        out[which] = {
            "mean": np.stack([s.mean(axis=0) for s in stacked]),
            "std": np.stack([s.std(axis=0) for s in stacked]),
            "max": np.stack([s.max(axis=0) for s in stacked]),
            "rms": np.stack([np.sqrt((s**2).mean(axis=0)) for s in stacked]),
            "count": np.array([s.shape[0] for s in stacked]),
        }
    return out

"""One head on one prompt: its attention map, raw logits, per-token chunk norms (the paper's Figures 5-7,
F12, F14-F16) and the Cauchy-Schwarz table (T3-T5).

Logits are the model's own: ``scaling * q.k`` with soft-capping where the model applies it, on
post-RoPE q and k; masked entries (future keys, keys outside a sliding window) are NaN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ropescope.errors import PromptError
from ropescope.heads.defaults import REPORT_TOKENS
from ropescope.hooks import capture
from ropescope.hooks.attention import attention_blocks
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import chunk_norms
from ropescope.model.loading import tokenizer_of

MAX_VIEW_TOKENS = 2048


@dataclass
class HeadView:
    """Everything about one head on one prompt (token positions 0-based)."""

    layer: int
    head: int
    tokens: list[str]
    attention: np.ndarray  # [S, S] attention probabilities (rows: queries)
    logits: np.ndarray  # [S, S] logits, NaN where masked
    q_chunk_norms: np.ndarray  # [S, C] chunk 2-norms of the query
    k_chunk_norms: np.ndarray  # [S, C] of the key (the head's KV head)
    q_norms: np.ndarray  # [S] 2-norm of the whole query vector
    k_norms: np.ndarray  # [S]
    scaling: float
    softcap: float | None


def check_head(model, layer: int, head: int) -> None:
    """Raise :class:`~ropescope.errors.RopescopeError` unless ``(layer, head)`` exists (0-based)."""
    inspect_model(model).check_head(layer, head)


def head_view(model, tokenizer, layer: int, head: int, text: str, max_tokens: int = 64) -> HeadView:
    """Run ``text`` (cut to ``max_tokens``) and view query head ``head`` of ``layer`` (0-based)."""
    anatomy = inspect_model(model)
    anatomy.check_head(layer, head)
    tokenizer = tokenizer_of(model, tokenizer)
    ids = _prompt_ids(tokenizer, text, max_tokens)
    if len(ids) < 2:
        raise PromptError("the prompt has one token, so no attention offset exists")
    geometry = anatomy.geometry
    rule = anatomy.logit_rules[layer]
    if rule.sinks is not None:  # this head's learned sink logit only: the view computes one head
        rule = dataclasses.replace(rule, sinks=(rule.sinks[head],))
    kept = {}

    def on_qk(lay, q_rot, k_rot, mask):
        if lay == layer:
            group = q_rot.shape[1] // k_rot.shape[1]
            kept["q"], kept["k"] = q_rot[0, head].float().clone(), k_rot[0, head // group].float().clone()

    with torch.inference_mode(), capture(anatomy, on_qk=on_qk, tensors=(), include_bos=True):
        anatomy.base(input_ids=torch.tensor([ids], device=anatomy.device), use_cache=False)
    q, k = kept["q"].cpu(), kept["k"].cpu()
    (block,) = attention_blocks(q[None], k[None], rule, block=len(ids))
    logits = block.logits[0].numpy().copy()
    logits[~np.isfinite(logits)] = np.nan
    r = geometry.rotary_dim
    return HeadView(
        layer,
        head,
        [tokenizer.decode([t]) for t in ids],
        block.probs[0].numpy(),
        logits,
        chunk_norms(q[:, :r], geometry.layout).numpy(),
        chunk_norms(k[:, :r], geometry.layout).numpy(),
        q.norm(dim=-1).numpy(),
        k.norm(dim=-1).numpy(),
        rule.scaling,
        rule.softcap,
    )


def cauchy_schwarz_table(view: HeadView, first: int = 0, last: int = 7) -> pd.DataFrame:
    """Per query token ``i`` in ``first..last``: the bound ``scaling * ||q_i|| * ||k_j||`` and the
    actual logit for ``j = i`` (diagonal) and ``j = i - 1`` (previous token), and the fraction of
    the bound reached. Logits are before soft-capping (the bound holds for those); NaN where the
    key does not exist or is masked.
    """
    rows = []
    softcap = view.softcap
    for i in range(first, min(last, len(view.tokens) - 1) + 1):
        row = {"token": i, "text": view.tokens[i]}
        for name, j in (("diagonal", i), ("previous", i - 1)):
            bound = view.scaling * view.q_norms[i] * view.k_norms[j] if j >= 0 else np.nan
            logit = view.logits[i, j] if j >= 0 else np.nan
            if softcap and np.isfinite(logit):  # undo the cap: the bound is on the raw logit
                logit = float(softcap * np.arctanh(np.clip(logit / softcap, -1 + 1e-7, 1 - 1e-7)))
            row[f"bound_{name}"] = bound
            row[f"logit_{name}"] = logit
            row[f"fraction_{name}"] = logit / bound if j >= 0 and bound > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _prompt_ids(tokenizer, text: str, max_tokens: int) -> list[int]:
    """The token ids of one prompt for a per-prompt view, cut to ``max_tokens`` (checked)."""
    if not text.strip():
        raise PromptError("the prompt is empty")
    if not 0 < max_tokens <= MAX_VIEW_TOKENS:
        raise PromptError(f"max_tokens must be in 1..{MAX_VIEW_TOKENS} for a per-prompt view, got {max_tokens}")
    return tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]


def prompt_attention(model, tokenizer, text: str, max_tokens: int = REPORT_TOKENS) -> dict:
    """Attention probabilities of every head on one prompt (cut to ``max_tokens``), from one forward.

    Returns ``{"tokens": [...], "heads": {"L,H": [[p(query i -> key j)]]}}`` (0-based layer and query
    head; rows are queries; masked entries 0), the model's own logit rule (scaling, soft-capping,
    sliding window) applied to its post-RoPE q and k, as in :func:`head_view`.
    """
    anatomy = inspect_model(model)
    tokenizer = tokenizer_of(model, tokenizer)
    ids = _prompt_ids(tokenizer, text, max_tokens)
    kept = {}

    def on_qk(lay, q_rot, k_rot, mask):
        kept[lay] = (q_rot[0].float().cpu(), k_rot[0].float().cpu())

    with torch.inference_mode(), capture(anatomy, on_qk=on_qk, tensors=(), include_bos=True):
        anatomy.base(input_ids=torch.tensor([ids], device=anatomy.device), use_cache=False)
    heads = {}
    for layer in sorted(kept):
        q, k = kept[layer]
        (block,) = attention_blocks(q, k, anatomy.logit_rules[layer], block=len(ids))
        probs = np.nan_to_num(block.probs.numpy())
        for head in range(probs.shape[0]):
            heads[f"{layer},{head}"] = np.round(probs[head], 4).tolist()
    return {"tokens": [tokenizer.decode([t]) for t in ids], "heads": heads}

"""Search for trigger-token heads like the paper's apostrophe head (the paper's Figures 7, 12 and 17).

Such a head sends the token right after a trigger token (an apostrophe, in Gemma 7B) to the
trigger, and every other token to BOS. For every head and every previous-token string ``t`` seen
at least ``min_count`` times, the search compares the mean attention on the previous token over
rows whose previous token is ``t`` with the same mean over all other rows; the best head and
token are those with the largest gap, provided the head otherwise attends mostly to the first
token. Nothing is assumed about which token or head it will be.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ropescope.hooks import capture
from ropescope.hooks.attention import attention_blocks
from ropescope.model.anatomy import inspect_model
from ropescope.prompts import check_texts


@dataclass
class TriggerHead:
    """The best trigger head found (0-based layer/head); ``None`` fields when there is none."""

    layer: int
    head: int
    token: str
    trigger_attention: float  # mean attention on the previous token when it is the trigger
    other_attention: float  # the same over all other rows
    other_sink: float  # mean attention on the first token over the other rows
    count: int  # rows whose previous token is the trigger


def search_trigger_heads(model, tokenizer, texts: Sequence[str], min_count: int = 3, max_tokens: int = 512):
    """Return (best :class:`TriggerHead` or ``None``, list of all candidates as dicts)."""
    texts = check_texts(texts)
    anatomy = inspect_model(model)
    rules = anatomy.logit_rules
    n_layers, n_heads = anatomy.n_layers, anatomy.n_heads
    prev_rows: list[np.ndarray] = []  # per prompt [L, H, S]
    sink_rows: list[np.ndarray] = []
    tokens: list[list[str]] = []
    base, device = anatomy.base, anatomy.device
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"][:max_tokens]
        if len(ids) < 3:
            continue
        seq = len(ids)
        prev, sink = np.zeros((n_layers, n_heads, seq)), np.zeros((n_layers, n_heads, seq))

        def on_qk(layer, q_rot, k_rot, mask, prev=prev, sink=sink):
            for block in attention_blocks(q_rot[0].float(), k_rot[0].float(), rules[layer]):
                rows = block.rows
                ok = rows >= 2
                r = torch.nonzero(ok)[:, 0]
                prev[layer][:, rows[r].cpu().numpy()] = block.probs[:, r, rows[r] - 1 - block.j0].cpu().numpy()
                if block.j0 == 0:
                    sink[layer][:, rows[r].cpu().numpy()] = block.probs[:, r, 0].cpu().numpy()

        with torch.inference_mode(), capture(anatomy, on_qk=on_qk, tensors=(), include_bos=True):
            base(input_ids=torch.tensor([ids], device=device), use_cache=False)
        prev_rows.append(prev[:, :, 2:])
        sink_rows.append(sink[:, :, 2:])
        tokens.append([tokenizer.decode([t]) for t in ids[1:-1]])  # previous token of rows 2..S-1
    if not tokens:
        return None, []
    prev_all = np.concatenate(prev_rows, axis=-1)
    sink_all = np.concatenate(sink_rows, axis=-1)
    previous = [t for row in tokens for t in row]
    where = defaultdict(list)
    for i, t in enumerate(previous):
        where[t].append(i)
    candidates = []
    for token, rows in where.items():
        if len(rows) < min_count or not token.strip():
            continue
        mask = np.zeros(len(previous), dtype=bool)
        mask[rows] = True
        on, off = prev_all[..., mask].mean(-1), prev_all[..., ~mask].mean(-1)
        off_sink = sink_all[..., ~mask].mean(-1)
        score = np.where(off_sink >= 0.3, on - off, -np.inf)
        layer, head = np.unravel_index(int(np.argmax(score)), score.shape)
        candidates.append(
            {
                "layer": int(layer),
                "head": int(head),
                "token": token,
                "gap": float(score[layer, head]),
                "trigger_attention": float(on[layer, head]),
                "other_attention": float(off[layer, head]),
                "other_sink": float(off_sink[layer, head]),
                "count": len(rows),
            }
        )
    candidates.sort(key=lambda c: -c["gap"])
    best = candidates[0] if candidates and np.isfinite(candidates[0]["gap"]) and candidates[0]["gap"] > 0.2 else None
    if best is None:
        return None, candidates
    return TriggerHead(
        best["layer"],
        best["head"],
        best["token"],
        best["trigger_attention"],
        best["other_attention"],
        best["other_sink"],
        best["count"],
    ), candidates

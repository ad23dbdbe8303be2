"""A layer's attention recomputed block by block from its post-RoPE q and k, with the model's rule.

The rule (:class:`~ropescope.model.anatomy.LogitRule`, read once into the model's anatomy):
logits are ``scaling * q.k`` (Gemma: ``query_pre_attn_scalar ** -0.5``), soft-capped as
``cap * tanh(logit / cap)`` where the model does (Gemma 2), masked causally and, on sliding
layers, to keys with ``i - j < window`` (on chunked layers, Llama 4, to keys of the query's own
chunk); query head ``h`` reads KV head ``h // (heads / kv_heads)``
(GQA). Rows are processed ``block`` at a time, so memory is ``heads * block * visible keys``, never
``heads * S * S``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ropescope.model.anatomy import LogitRule


@dataclass
class Block:
    """Rows ``rows`` (query positions) against keys ``j0 .. j0 + probs.shape[-1] - 1``."""

    rows: torch.Tensor  # [R] query positions
    j0: int  # position of the first key column
    logits: torch.Tensor  # [H, R, J] scaled (and soft-capped) logits, -inf where masked
    probs: torch.Tensor  # [H, R, J] attention probabilities


def grouped_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[H, R, J]`` dot products of query heads ``q[H, R, D]`` with their KV heads ``k[Hkv, J, D]``."""
    heads, rows, dim = q.shape
    kv = k.shape[0]
    grouped = q.reshape(kv, heads // kv, rows, dim) @ k[:, None].transpose(-1, -2)
    return grouped.reshape(heads, rows, k.shape[1])


def attention_blocks(q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256) -> Iterator[Block]:
    """Yield the attention of ``q[H, S, D]`` over ``k[Hkv, S, D]`` (post-RoPE, one prompt) by row block."""
    for rows, j0, logits in logit_blocks(q, k, rule, block):
        yield Block(rows, j0, logits, softmax_with_sinks(logits, rule))


def logit_blocks(
    q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256
) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """``(rows [R], j0, logits [H, R, J])`` by row block: the scaled, soft-capped logits of rows
    ``rows`` against keys ``j0 ..`` (only the keys some row of the block can see), -inf where masked."""
    seq = q.shape[1]
    q, k = q.float(), k.float()
    for i0 in range(0, seq, block):
        i1 = min(seq, i0 + block)
        j0 = first_visible_of(i0, rule)
        j1 = i1 if rule.causal else (seq if rule.window is None else min(seq, i1 - 1 + rule.window))
        logits = grouped_scores(q[:, i0:i1], k[:, j0:j1]) * rule.scaling
        if rule.softcap:
            logits = torch.tanh(logits / rule.softcap) * rule.softcap
        rows = torch.arange(i0, i1, device=q.device)
        cols = torch.arange(j0, j1, device=q.device)
        allowed = visible(rows[:, None], cols[None, :], rule)
        yield rows, j0, logits.masked_fill(~allowed, float("-inf"))


def row_logsumexp(q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256) -> torch.Tensor:
    """``[H, S]`` float32: the log of each query row's softmax normaliser, ``log sum_j exp(logit(i, j))``
    over the keys row ``i`` can see (and the head's sink logit, where the layer has sinks).

    The attention row ``i`` pays key ``j`` is then ``exp(logit(i, j) - LSE_i)``: scores of a few
    chosen keys (offsets, the first token) cost ``O(tokens x head dim)`` each, with no probability
    matrix. Blocks of rows keep memory at ``heads x block x visible keys``."""
    parts = [torch.logsumexp(logits, dim=-1) for _, _, logits in logit_blocks(q, k, rule, block)]
    lse = torch.cat(parts, dim=1)
    if rule.sinks is not None:
        sinks = torch.tensor(rule.sinks, dtype=lse.dtype, device=lse.device)
        lse = torch.logaddexp(lse, sinks[:, None])
    return lse


def softmax_with_sinks(logits: torch.Tensor, rule: LogitRule) -> torch.Tensor:
    """Each row's softmax over its keys ``logits[H, R, J]``, with the head's sink logit as one more
    column (dropped after the softmax) where the layer has sinks."""
    if rule.sinks is None:
        return torch.softmax(logits, dim=-1)
    sinks = torch.tensor(rule.sinks, dtype=logits.dtype, device=logits.device)
    column = sinks[:, None, None].expand(logits.shape[0], logits.shape[1], 1)
    return torch.softmax(torch.cat([logits, column], dim=-1), dim=-1)[..., :-1]


def last_visible(rows: torch.Tensor, seq: int, rule: LogitRule) -> torch.Tensor:
    """Position of the last key each row can see (itself, causally)."""
    if rule.causal:
        return rows
    if rule.chunk is not None:
        raise ValueError("chunked attention is causal in every model that uses it")
    if rule.window is None:
        return torch.full_like(rows, seq - 1)
    return (rows + rule.window - 1).clamp(max=seq - 1)


def first_visible(rows: torch.Tensor, rule: LogitRule) -> torch.Tensor:
    """Position of the first key each row can see (0, the window's start, or its chunk's start)."""
    first = torch.zeros_like(rows)
    if rule.window is not None:
        first = (rows - rule.window + 1).clamp(min=0)
    if rule.chunk is not None:
        first = torch.maximum(first, torch.div(rows, rule.chunk, rounding_mode="floor") * rule.chunk)
    return first


def first_visible_of(row: int, rule: LogitRule) -> int:
    """:func:`first_visible` of one row, in plain integers (no tensor, nothing to read back)."""
    first = 0 if rule.window is None else max(0, row - rule.window + 1)
    return first if rule.chunk is None else max(first, row // rule.chunk * rule.chunk)


def visible(rows: torch.Tensor, key: torch.Tensor, rule: LogitRule) -> torch.Tensor:
    """Whether each row can see the key at position ``key[row]`` (causal or not, window, chunk)."""
    ok = (key >= 0) & (key <= rows) if rule.causal else (key >= 0) & (rows >= 0)
    if rule.window is not None:
        ok = ok & (key > rows - rule.window)
        if not rule.causal:
            ok = ok & (key < rows + rule.window)
    if rule.chunk is not None:
        ok = ok & (
            torch.div(key, rule.chunk, rounding_mode="floor") == torch.div(rows, rule.chunk, rounding_mode="floor")
        )
    return ok

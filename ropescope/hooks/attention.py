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

from ropescope.errors import UnsupportedModelError
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


def check_dense(rule: LogitRule, seq: int, layer: int | None = None) -> None:
    """Refuse a prompt of ``seq`` tokens where ``rule``'s sparse attention would leave some row's keys
    out (:attr:`~ropescope.model.anatomy.LogitRule.dense_up_to`): head scores recompute dense
    attention, which the model no longer computes there."""
    if rule.dense_up_to is not None and seq > rule.dense_up_to:
        limit, where = rule.dense_up_to, "a layer" if layer is None else f"layer {layer}"
        if not limit:
            raise SparseAttentionError(
                f"{where} attends only to the keys an indexer of a kind ropescope cannot read selects (sparse "
                "attention), so head scores recomputed from q and k would not be its attention"
            )
        raise SparseAttentionError(
            f"{where} attends only to the keys its indexer selects (sparse attention) once a prompt is longer "
            f"than {limit} tokens, and this one has {seq}: head scores are exact up to {limit} tokens "
            f"(--max-tokens {limit})"
        )


class SparseAttentionError(UnsupportedModelError):
    """A prompt longer than a sparse-attention layer attends to densely."""


def attention_blocks(q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256) -> Iterator[Block]:
    """Yield the attention of ``q[H, S, D]`` over ``k[Hkv, S, D]`` (post-RoPE, one prompt) by row block."""
    for rows, j0, logits in logit_blocks(q, k, rule, block):
        yield Block(rows, j0, logits, softmax_with_sinks(logits, rule))


# rows per block of a normaliser pass (:func:`rows_per_block`): the [heads, rows, keys] float32
# logits of one block stay under this many elements on a CPU (4 MB), elsewhere (a GPU: fewer, larger
# kernels) under 64 MB
LSE_BLOCK_ELEMENTS = {"cpu": 1 << 20}
LSE_BLOCK_ELEMENTS_ELSEWHERE = 1 << 24
# boolean mask elements a :class:`MaskCache` keeps at most (64 MB): the causal masks of 8,192 tokens fit
_MASK_CACHE_ELEMENTS = 1 << 26


def rows_per_block(heads: int, seq: int, device, least: int) -> int:
    """Query rows per block of a normaliser pass over ``seq`` keys: at least ``least``, more while
    one block's logits fit the device's :data:`LSE_BLOCK_ELEMENTS` (one block for a short prompt)."""
    budget = LSE_BLOCK_ELEMENTS.get(torch.device(device).type, LSE_BLOCK_ELEMENTS_ELSEWHERE)
    return max(least, budget // max(1, heads * seq))


class MaskCache(dict):
    """``(rows, hidden)`` of each row block (the block's query positions, and where its keys are out
    of sight), kept for the next layer or prompt with the same positions and rule: they depend on
    positions only, so a layer reuses them instead of rebuilding them (fewer kernels per layer)."""

    def get_or_make(self, i0: int, i1: int, j0: int, j1: int, rule: LogitRule, device) -> tuple[torch.Tensor, ...]:
        key = (i0, i1, j0, j1, rule, str(device))
        if key not in self:
            rows = torch.arange(i0, i1, device=device)
            cols = torch.arange(j0, j1, device=device)
            made = (rows, ~visible(rows[:, None], cols[None, :], rule))
            if sum(hidden.numel() for _, hidden in self.values()) + made[1].numel() > _MASK_CACHE_ELEMENTS:
                self.clear()
            self[key] = made
        return self[key]


def logit_blocks(
    q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256, masks: MaskCache | None = None
) -> Iterator[tuple[torch.Tensor, int, torch.Tensor]]:
    """``(rows [R], j0, logits [H, R, J])`` by row block: the scaled, soft-capped logits of rows
    ``rows`` against keys ``j0 ..`` (only the keys some row of the block can see), -inf where masked.
    ``masks``: where to keep the blocks' position masks for later calls (made afresh without one)."""
    seq = q.shape[1]
    check_dense(rule, seq)
    q, k = q.float(), k.float()
    masks = MaskCache() if masks is None else masks
    for i0 in range(0, seq, block):
        i1 = min(seq, i0 + block)
        j0 = first_visible_of(i0, rule)
        j1 = i1 if rule.causal else (seq if rule.window is None else min(seq, i1 - 1 + rule.window))
        logits = grouped_scores(q[:, i0:i1], k[:, j0:j1]) * rule.scaling
        if rule.softcap:
            logits = torch.tanh(logits / rule.softcap) * rule.softcap
        rows, hidden = masks.get_or_make(i0, i1, j0, j1, rule, q.device)
        yield rows, j0, logits.masked_fill(hidden, float("-inf"))


def row_logsumexp(
    q: torch.Tensor, k: torch.Tensor, rule: LogitRule, block: int = 256, masks: MaskCache | None = None
) -> torch.Tensor:
    """``[H, S]`` float32: the log of each query row's softmax normaliser, ``log sum_j exp(logit(i, j))``
    over the keys row ``i`` can see (and the head's sink logit, where the layer has sinks).

    The attention row ``i`` pays key ``j`` is then ``exp(logit(i, j) - LSE_i)``: scores of a few
    chosen keys (offsets, the first token) cost ``O(tokens x head dim)`` each, with no probability
    matrix. Blocks of rows keep memory at ``heads x block x visible keys``; ``masks`` keeps their
    position masks for the next call (:class:`MaskCache`)."""
    parts = [torch.logsumexp(logits, dim=-1) for _, _, logits in logit_blocks(q, k, rule, block, masks)]
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

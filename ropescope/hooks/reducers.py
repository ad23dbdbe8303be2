"""The extension point of a run: reducers of every layer's post-RoPE queries and keys.

A run (:func:`ropescope.profile`, :func:`ropescope.scan_heads`) reduces q, k and v to chunk-norm
statistics inside its hooks. Anything else that should be computed from the same forward passes
is a *reducer*: an object called once per layer and forward pass with that layer's post-RoPE q and
k, which folds them into running sums of its own (on their device, without copying activations to
the host) and is read when the run ends. Pass any number of them as ``reducers=[...]``; they all
see the same passes, so the profile, the head scores and your own quantity cost one run.

A reducer is any callable ``reducer(layer, q_rot, k_rot, mask)`` where

- ``q_rot`` is ``[batch, query heads, tokens, head dim]`` and ``k_rot`` ``[batch, KV heads, tokens,
  head dim]``: the post-RoPE q and k exactly as the layer's attention multiplies them (whole heads,
  also for partial-rotary layers; KV-sharing layers get the keys they attend to);
- ``mask`` is ``[batch, tokens]`` bool: the tokens the run counts (not padding; not BOS unless
  ``include_bos``).

Optional attributes change how it is run:

- ``whole_prompts = True``: one prompt per forward pass (``batch`` is 1, ``tokens`` the whole
  prompt), for quantities over a prompt's own attention rows;
- ``layers``: a set of layer indices: called for those layers only (``None``: every layer);
- ``uses_lse = True``: also called with ``lse=`` (``[query heads, tokens]`` float64): the log of
  each attention row's softmax normaliser under the layer's own rule (scaling, soft-capping,
  window, sinks), computed once per layer for every reducer that asks (taken from the model's own
  attention kernel where it computes it: :mod:`ropescope.hooks.model_lse`). The attention row
  ``i`` pays key ``j`` is ``exp(logit(i, j) - lse[h, i])``. Implies ``whole_prompts``.

Example (the mean post-RoPE query norm of every layer and head)::

    class QueryNorm:
        def __init__(self, n_layers, n_heads):
            self.total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
            self.tokens = torch.zeros(n_layers, dtype=torch.float64)

        def __call__(self, layer, q_rot, k_rot, mask):
            if self.total.device != q_rot.device:  # sums stay where the model runs
                self.total, self.tokens = self.total.to(q_rot.device), self.tokens.to(q_rot.device)
            norms = q_rot.double().norm(dim=-1)                      # [batch, heads, tokens]
            counted = mask[:, None, :]
            self.total[layer] += (norms * counted).sum(dim=(0, 2))
            self.tokens[layer] += counted.sum()

    reducer = QueryNorm(n_layers, n_heads)
    prof = ropescope.profile(model, tokenizer, texts, reducers=[reducer])
    mean_query_norm = (reducer.total / reducer.tokens[:, None]).cpu()  # read once, at the end
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from ropescope.hooks.attention import MaskCache, check_dense, row_logsumexp, rows_per_block
from ropescope.hooks.precision import full_float32
from ropescope.model.anatomy import ModelAnatomy

LSE_BLOCK = 256  # query rows per block when a layer's row normalisers are computed for reducers


@runtime_checkable
class Reducer(Protocol):
    """Called with every layer's post-RoPE ``q_rot``, ``k_rot`` and counted-token ``mask``."""

    def __call__(self, layer: int, q_rot: torch.Tensor, k_rot: torch.Tensor, mask: torch.Tensor) -> None: ...


def whole_prompts(reducers: Sequence[Callable]) -> bool:
    """Whether any of ``reducers`` needs one prompt per forward pass."""
    return any(getattr(r, "whole_prompts", False) or getattr(r, "uses_lse", False) for r in reducers)


def fan_out(anatomy: ModelAnatomy, reducers: Sequence[Callable]) -> Callable | None:
    """One ``on_qk`` hook for the capture that hands every layer's q and k to each reducer in turn
    (in the given order), with each row's softmax normaliser computed once per layer for those that
    set ``uses_lse``. ``None`` when there is no reducer (the hooks then skip the post-RoPE hand-off)."""
    reducers = list(reducers)
    for reducer in reducers:
        if not callable(reducer):
            raise TypeError(f"a reducer must be callable as reducer(layer, q_rot, k_rot, mask); got {reducer!r}")
    if not reducers:
        return None
    rules = anatomy.logit_rules
    # rows per block of the normaliser pass: at least the smallest any reducer asks for (``block``), more
    # while a block's logits stay within the device's budget (:func:`~ropescope.hooks.attention.rows_per_block`)
    block = min([getattr(r, "block", LSE_BLOCK) for r in reducers if getattr(r, "uses_lse", False)] or [LSE_BLOCK])

    masks = MaskCache()  # the normaliser pass's position masks, shared by layers and prompts

    def on_qk(layer, q_rot, k_rot, mask, lse=None):
        rule = rules[layer]
        if rule is not None and rule.dense_up_to is not None and any(getattr(r, "uses_lse", False) for r in reducers):
            check_dense(rule, q_rot.shape[2], layer)  # attention recomputed densely: exact up to its length
        if lse is not None and (rule.sinks is not None or rule.softcap):
            lse = None  # a normaliser from the model's kernel covers neither sinks nor soft-capping: recompute
        for reducer in reducers:
            only = getattr(reducer, "layers", None)  # a reducer of some layers only
            if only is not None and layer not in only:
                continue
            if getattr(reducer, "uses_lse", False):
                if lse is None:
                    heads, seq = q_rot.shape[1], q_rot.shape[2]
                    rows = rows_per_block(heads, seq, q_rot.device, block)
                    with full_float32():
                        lse = row_logsumexp(q_rot[0].float(), k_rot[0].float(), rule, rows, masks)
                reducer(layer, q_rot, k_rot, mask, lse=lse)
            else:
                reducer(layer, q_rot, k_rot, mask)

    # the capture may take each row's normaliser from the model's own attention kernel
    # (:mod:`ropescope.hooks.model_lse`) and hand it over as ``lse``
    on_qk.uses_lse = any(getattr(r, "uses_lse", False) for r in reducers)
    return on_qk

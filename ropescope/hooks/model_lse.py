"""Each attention row's softmax normaliser taken from the model's own attention kernel.

Head scores need, for every query row, the log of its softmax normaliser (LSE). Recomputing it
from q and k costs as much as the model's own attention; the fused CPU kernel the model already
runs (``scaled_dot_product_attention``, flash attention for CPU) returns it alongside the output.
While a capture whose reducers ask for the LSE is installed, ``torch.nn.functional.
scaled_dot_product_attention`` is wrapped: a layer's reducer call is held back from its RoPE call
until the layer's own attention runs; when that attention is the kernel's flash path on exactly the
q the reducers were given, the wrapper calls that same kernel itself (its output is the one
``scaled_dot_product_attention`` would return, bit for bit: the same operator on the same inputs,
grouped keys repeated to their query heads as it repeats them; tested on every call path)
and hands its LSE to the reducers. Anything else (eager attention, a GPU, half precision, a query
other than the one the reducers saw) runs untouched, and the held call recomputes the LSE when the
layer ends (:func:`ropescope.hooks.attention.row_logsumexp`), as before.

Float32 only: the kernel's LSE of float32 q and k is within 1e-6 of float64; from bfloat16 inputs it
is the normaliser of the rounded logits, about 5e-5 off, so half precision keeps the recomputation.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

_FLASH = int(torch.nn.attention.SDPBackend.FLASH_ATTENTION)
_LOCK = threading.Lock()
_ACTIVE: list[ModelLse] = []  # installed instances, the last installed asked first
_ORIGINAL = None  # the function the wrapper replaced, while installed


class ModelLse:
    """Holds each layer's reducer call until the layer's attention runs (see the module docs).

    ``on_qk(layer, q_rot, k_rot, mask, lse=None)`` is the capture's reducer hook; ``used`` counts
    calls that got the kernel's LSE, ``recomputed`` those that recompute it."""

    def __init__(self, on_qk):
        self.on_qk = on_qk
        self.pending = None
        self.used = self.recomputed = 0

    def __call__(self, layer, q_rot, k_rot, mask) -> None:
        self.flush()
        self.pending = (layer, q_rot, k_rot, mask)

    def flush(self) -> None:
        """Run a held call with the LSE recomputed (its layer's attention did not hand one over)."""
        if self.pending is not None:
            held, self.pending = self.pending, None
            self.recomputed += 1
            self.on_qk(*held)

    def install(self) -> None:
        global _ORIGINAL
        with _LOCK:
            if not _ACTIVE:
                _ORIGINAL = F.scaled_dot_product_attention
                F.scaled_dot_product_attention = _wrapper
            _ACTIVE.append(self)

    def remove(self) -> None:
        """Uninstall; a held call is dropped (the forward pass that made it did not finish)."""
        global _ORIGINAL
        self.pending = None
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if not _ACTIVE and _ORIGINAL is not None:
                F.scaled_dot_product_attention, _ORIGINAL = _ORIGINAL, None

    def _takes(self, query) -> bool:
        held = self.pending
        if held is None:
            return False
        q = held[1]
        return query.data_ptr() == q.data_ptr() and query.shape == q.shape and query.stride() == q.stride()


def _eligible(query, key, value, options: dict) -> bool:
    """Whether ``scaled_dot_product_attention(query, key, value, **options)`` runs the CPU flash
    kernel on one float32 prompt (grouped keys allowed where ``enable_gqa`` asks for them)."""
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in (query, key, value)):
        return False
    if options["dropout_p"] or query.dim() != 4 or query.shape[0] != 1:
        return False
    if key.shape[1] != query.shape[1] and not (options["enable_gqa"] and query.shape[1] % key.shape[1] == 0):
        return False
    mask = options["attn_mask"]
    if mask is not None and mask.dtype not in (torch.bool, torch.float32):
        return False
    return int(torch._fused_sdp_choice(query, key, value, **options)) == _FLASH


def _wrapper(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    options = dict(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    taker = next((m for m in reversed(_ACTIVE) if m._takes(query)), None)
    if taker is None or not _eligible(query, key, value, options):
        return _ORIGINAL(query, key, value, **options)
    mask = attn_mask
    if mask is not None and mask.dtype == torch.bool:  # as scaled_dot_product_attention converts it
        mask = torch.where(
            mask.logical_not(),
            torch.tensor(-torch.inf, dtype=query.dtype),
            torch.tensor(0.0, dtype=query.dtype),
        )
    if key.shape[1] != query.shape[1]:  # grouped keys: each KV head beside its query heads, as the kernel does
        group = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=mask, scale=scale
    )
    layer, q_rot, k_rot, token_mask = taker.pending
    taker.pending = None
    taker.used += 1
    taker.on_qk(layer, q_rot, k_rot, token_mask, lse=lse[0].double())
    return out

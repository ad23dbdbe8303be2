"""The exactness gate of head scores: the recomputed attention must equal the model's own.

Head scores are computed from post-RoPE q and k with each layer's logit rule
(:class:`~ropescope.model.anatomy.LogitRule`: scaling, soft-cap, causal and sliding-window
masks, GQA). A model whose attention has a term that rule does not know (learned sinks, a
bidirectional mask, a temperature, a second attention map) would get wrong scores with no error.
:func:`check_attention_rule` runs the first :data:`GATE_TOKENS` tokens of one prompt through the
model once with eager attention and ``output_attentions=True``, recomputes every layer's attention
from the q and k captured at RoPE in the same pass, and raises :class:`AttentionRuleError` naming
the first layer whose attention probabilities differ by more than :data:`GATE_TOLERANCE` (absolute,
per entry). Head scores with learned sinks are the attention each key's value receives (the
sink takes the rest of the row); where a model reports its attention before the sink (rows
summing to 1), the recomputed rows are renormalised for the comparison. ``scan_heads`` runs it
on the first prompt of every scan; ``ropescope families`` runs it for every family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ropescope.errors import UnsupportedModelError
from ropescope.hooks.attention import attention_blocks, check_dense
from ropescope.hooks.precision import full_float32
from ropescope.model.anatomy import ModelAnatomy

GATE_TOKENS = 256  # tokens of the first prompt checked (attention there is a 256 x 256 map per head)
# Largest accepted |ours - model's| of one attention probability, by the dtype the model runs in.
# Half precision: the model multiplies q and k and rounds its logits to 8 (bf16) or 11 (fp16)
# mantissa bits before the softmax, while ropescope multiplies in float32.
GATE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-6, torch.float16: 1e-2, torch.bfloat16: 4e-2}


class AttentionRuleError(UnsupportedModelError):
    """The attention recomputed from q, k and the logit rule is not the model's own."""


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block every (sub)model of ``model`` computes attention eagerly (the only
    implementation that returns attention weights); on exit each config's own choice is back."""
    configs = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            configs[id(config)] = config
            for sub in _sub_configs(config):
                configs[id(sub)] = sub
    saved = {key: config.__dict__.get(_INTERNAL, _MISSING) for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = "eager"
        yield
    finally:  # written back directly: the setter would pass a parent's choice on to its sub-configs
        for key, config in configs.items():
            if saved[key] is _MISSING:
                config.__dict__.pop(_INTERNAL, None)
            else:
                config.__dict__[_INTERNAL] = saved[key]


_INTERNAL, _MISSING = "_attn_implementation_internal", object()


def _sub_configs(config) -> list:
    subs = []
    for name in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, name, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            subs.append(sub)
    return subs


@torch.no_grad()
def check_attention_rule(anatomy: ModelAnatomy, input_ids: torch.Tensor, tolerance: float | None = None) -> float:
    """Compare the recomputed attention of every layer with the model's own on ``input_ids``
    (``[1, S]``, cut to :data:`GATE_TOKENS`). Returns the largest absolute difference of one
    attention probability; raises :class:`AttentionRuleError` naming the first layer over
    ``tolerance`` (default :data:`GATE_TOLERANCE` of the model's dtype)."""
    from ropescope.hooks import capture

    ids = input_ids[:1, :GATE_TOKENS].to(anatomy.device)
    if tolerance is None:
        tolerance = GATE_TOLERANCE.get(anatomy.dtype, 4e-2)
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def on_qk(layer, q, k, mask):
        kept[layer] = (q[0].float().clone(), k[0].float().clone())

    with capture(anatomy, on_qk=on_qk, tensors=(), include_bos=True):
        with eager_attention(anatomy.hf):  # the base model: no language-model head, no S x vocab logits
            runnable = anatomy.hf if anatomy.bridge else anatomy.base
            out = runnable(input_ids=ids, output_attentions=True, use_cache=False)
    layers = list(anatomy.geometry.attention_layers)
    if sorted(kept) != layers:
        missing = sorted(set(layers) - set(kept))
        raise AttentionRuleError(f"RoPE never reached the attention of layer(s) {', '.join(map(str, missing))}")
    theirs = list(getattr(out, "attentions", None) or [])
    if len(theirs) == anatomy.n_layers:  # a hybrid model may hold None for its other layers
        theirs = [theirs[layer] for layer in layers]
    if len(theirs) != len(layers) or any(a is None for a in theirs):
        raise AttentionRuleError(
            f"model type {anatomy.model_type!r} returns no attention weights to check head scores against"
        )
    with full_float32():
        return _compare(anatomy, kept, theirs, tolerance)


def _compare(anatomy: ModelAnatomy, kept: dict, theirs: list, tolerance: float) -> float:
    """The largest difference over layers of recomputed and own attention; raises on the first layer
    over ``tolerance``."""
    worst = 0.0
    for position, (layer, (q, k)) in enumerate(sorted(kept.items())):
        check_dense(anatomy.logit_rules[layer], q.shape[1], layer)  # sparse attention: dense up to a length only
        (block,) = attention_blocks(q, k, anatomy.logit_rules[layer], block=q.shape[1])
        own = theirs[position][0].float().to(block.probs.device)
        if own.shape != block.probs.shape:
            raise AttentionRuleError(
                f"layer {layer}: the model's attention has shape {tuple(own.shape)}, the recomputed "
                f"{tuple(block.probs.shape)}"
            )
        ours = block.probs
        rule = anatomy.logit_rules[layer]
        if rule.sinks is not None and bool(((own.sum(-1) - 1).abs() < 1e-3).all()):
            # the model reports its attention before the sink (Granite-SWA scales the attention output
            # by sigmoid(LSE - sink) instead, the same extra denominator term): compare renormalised
            ours = ours / ours.sum(-1, keepdim=True)
        difference = float((ours - own).abs().max())
        if not difference <= tolerance:
            raise AttentionRuleError(
                f"layer {layer}: attention recomputed from the RoPE'd q, k and the logit rule misses the model's "
                f"own by {difference:.1e} (tolerance {tolerance:.0e}): its attention has a term head scores do "
                "not model (sinks, a non-causal mask, a temperature), so ropescope will not score its heads"
            )
        worst = max(worst, difference)
    return worst

"""What ropescope knows about one model, read once: the object every analysis takes.

:func:`inspect_model` turns a Hugging Face causal LM, a TransformerLens ``TransformerBridge`` or a
:class:`~ropescope.model.loading.LoadedModel` into a :class:`ModelAnatomy`: the text config, the
RoPE geometry (from the model's own ``inv_freq`` buffers), head counts, context length, BOS id and,
on first use, the attention sites RoPE is applied at and each layer's logit rule. Analyses read
these fields instead of re-deriving them from the raw model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import weakref
from dataclasses import dataclass, field

import torch

from ropescope.errors import RopescopeError
from ropescope.model.families import (
    AttentionSite,
    attention_sites,
    config_value,
    decoder_without_head,
    refuse_drafter,
    refuse_encoder_decoder,
    text_config,
)
from ropescope.model.geometry import RopeGeometry, module_kv_heads, read_geometry, widest_kv


class _memoized:  # noqa: N801 - used as a decorator, like functools.cached_property
    """A property computed once and kept in the anatomy's :attr:`ModelAnatomy.memo`, a dict that holds
    nothing referring back to the model object: :func:`inspect_model` keeps it per model (weakly) and
    hands it to the next anatomy of the same, unchanged model."""

    def __init__(self, function):
        self.function, self.name = function, function.__name__
        self.func = function  # as functools.cached_property names it
        self.__doc__ = function.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        if self.name not in obj.memo:
            obj.memo[self.name] = self.function(obj)
        return obj.memo[self.name]


FINGERPRINT_SAMPLES = 4096  # values of each parameter in its weights fingerprint
# what a profile's ``weights_fingerprint`` was computed from (saved profiles without it: every
# parameter's sum and its first and last 64 values, before ropescope 0.1.0 read samples only)
FINGERPRINT_KIND = "sampled-4096"


def is_bridge(model) -> bool:
    """True for a TransformerLens ``TransformerBridge`` (checked without importing transformer_lens)."""
    return type(model).__module__.startswith("transformer_lens") and hasattr(model, "original_model")


def is_nnsight(model) -> bool:
    """True for an nnsight model wrapper (``LanguageModel``, ``TransformersModel``, ``NNsight``),
    checked without importing nnsight."""
    return any(c.__module__.startswith("nnsight.") for c in type(model).__mro__) and "_module" in vars(model)


def unwrap_nnsight(model):
    """The torch module an nnsight wrapper runs; its weights are loaded first (nnsight's
    ``dispatch()``) where the wrapper was made without them (on the meta device)."""
    if not getattr(model, "dispatched", True):
        model.dispatch()
    return vars(model)["_module"]


@dataclass(frozen=True)
class LogitRule:
    """How one layer turns post-RoPE q.k into attention: logits ``scaling * q.k``, soft-capped as
    ``softcap * tanh(logit / softcap)`` where the model does (Gemma 2), masked to keys at most
    ``window - 1`` tokens away on sliding layers (``None``: no window), causally unless ``causal``
    is False (bidirectional encoders such as EmbeddingGemma: every key, or ``|i - j| < window``);
    ``sinks`` (GPT-OSS: one learned logit per query head) join each row's softmax as an extra
    column that receives attention but is no key; ``chunk`` (Llama 4's chunked layers: 8,192 tokens)
    limits each query to the keys of its own chunk of positions (``j // chunk == i // chunk``);
    ``dense_up_to`` (sparse attention: DeepSeek V3.2, GLM-5, MiniMax M3, Qwen4-Exp, whose indexer
    keeps the ``index_topk`` best keys, or the best blocks of keys, per query) is the
    longest prompt whose every row still sees all of its keys: the rule is exact up to that length
    only, and longer prompts are refused (:func:`~ropescope.hooks.attention.check_dense`)."""

    scaling: float
    softcap: float | None
    window: int | None
    causal: bool = True
    sinks: tuple[float, ...] | None = None
    chunk: int | None = None
    dense_up_to: int | None = None


@dataclass(eq=False)
class ModelAnatomy:
    """A model as ropescope sees it. ``runnable`` is what forward passes go through (the bridge, for
    a TransformerBridge); ``hf`` holds config, buffers and weights (the bridge's ``original_model``)."""

    runnable: torch.nn.Module
    hf: torch.nn.Module
    config: object
    geometry: RopeGeometry
    bridge: bool = False
    _sites: tuple[AttentionSite, ...] | None = field(default=None, repr=False)
    # what was read off the model once (sites, logit rules, fingerprint, ...: :class:`_memoized`)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_type(self) -> str:
        return str(self.config.model_type)

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return int(self.config.num_attention_heads)

    @_memoized
    def n_kv_heads(self) -> int:
        """Key/value heads per layer (fewer than query heads under grouped-query attention); where
        layers differ, the most of the config's count and any layer's (Gemma 4's global layers have
        fewer: :meth:`layer_kv_heads`)."""
        counts = [module_kv_heads(site.module, self.n_heads) for site in self.hooked_sites]
        wide = config_value(self.config, "num_key_value_heads")
        return widest_kv(counts, wide, every=bool(counts) and all(counts)) or self.n_heads

    def layer_kv_heads(self, layer: int) -> int:
        """Key heads of ``layer`` at RoPE (one under MLA, whose RoPE key is shared by every head)."""
        return self.geometry.layers[layer].kv_heads or self.n_kv_heads

    def layer_v_heads(self, layer: int) -> int:
        """Value heads of ``layer`` (MLA: one per query head; else its KV heads)."""
        return self.geometry.layers[layer].v_heads or self.layer_kv_heads(layer)

    def layer_sizes(self, tensor: str) -> list[tuple[int, int]] | None:
        """``(heads, chunks)`` of every layer for ``tensor`` (q: query heads; k, v: KV heads), or None
        when every layer fills the ``[layers, heads, chunks]`` arrays (all but Gemma-4-like models)."""
        if not self.geometry.ragged:
            return None
        return self.geometry.layer_sizes(self.n_heads if tensor == "q" else self.n_kv_heads, tensor)

    @_memoized
    def frequencies_fixed_up_to(self) -> tuple[int, str] | None:
        """``(tokens, rope type)`` where the model's rotary module recomputes its frequencies from a
        pass's largest position: dynamic NTK scaling past the length it has cached, LongRoPE (short
        factors up to ``original_max_position_embeddings``, long ones past it), as the module itself
        decides in transformers' ``dynamic_rope_update``. Prompts of up to ``tokens`` tokens run with
        the frequencies ropescope read at load; longer ones with others, which ropescope's frequency
        labels and p-RoPE do not describe (refused: :meth:`check_fixed_frequencies`). None where every
        length uses the same frequencies. Read off the rotary modules (their ``rope_type`` and the
        config they hold), not the model's config."""
        found = []
        for module in self.hf.modules():
            kinds = getattr(module, "rope_type", None)
            if not any(name.endswith("inv_freq") for name, _ in module.named_buffers(recurse=False)):
                continue
            for layer_type, kind in kinds.items() if isinstance(kinds, dict) else [(None, kinds)]:
                prefix = f"{layer_type}_" if layer_type else ""
                if kind == "dynamic":
                    limit = getattr(module, f"{prefix}max_seq_len_cached", None) or getattr(
                        module, "max_seq_len_cached", None
                    )
                elif kind == "longrope":
                    params = getattr(getattr(module, "config", None), "rope_parameters", None) or {}
                    params = params.get(layer_type, params) if layer_type else params
                    limit = params.get("original_max_position_embeddings") if isinstance(params, dict) else None
                else:
                    continue
                if isinstance(limit, int | float) and limit > 0:
                    found.append((int(limit), str(kind)))
        return min(found) if found else None

    def check_fixed_frequencies(self, tokens: int, what: str) -> None:
        """Refuse, in one line, ``tokens`` (the longest prompt or window of ``what``) past
        :attr:`frequencies_fixed_up_to`."""
        fixed = self.frequencies_fixed_up_to
        if fixed is not None and tokens > fixed[0]:
            limit, kind = fixed
            name = {"dynamic": "dynamic NTK scaling", "longrope": "LongRoPE"}.get(kind, kind)
            raise RopescopeError(
                f"{what} of {tokens} tokens: this model's RoPE ({name}) switches to other frequencies past {limit} "
                f"tokens, and ropescope measures one set of frequencies per run; stay within {limit} tokens "
                f"(--max-tokens {limit}, --context {limit})"
            )

    @property
    def context_length(self) -> int | None:
        """The longest sequence the model was configured for (``max_position_embeddings``); a config
        value that is no positive whole number is refused in one line naming it (it is no context)."""
        value = getattr(self.config, "max_position_embeddings", None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value <= 0:
            raise RopescopeError(
                f"the model's config gives max_position_embeddings {str(value)[:40]!r}, which is no context length "
                "(a positive whole number of tokens); fix config.json"
            )
        return int(value)

    @property
    def bos_token_id(self) -> int | None:
        """The BOS id of the text config, else of a multimodal wrapper's own config (Qwen3-VL keeps
        it there only)."""
        for config in (self.config, getattr(self.hf, "config", None)):
            bos = getattr(config, "bos_token_id", None)
            if isinstance(bos, int):
                return bos
        return None

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def base(self) -> torch.nn.Module:
        """The decoder without its language-model head (:func:`~ropescope.model.families.decoder_without_head`)."""
        return decoder_without_head(self.hf)

    @_memoized
    def sites(self) -> tuple[AttentionSite, ...]:
        """Every attention layer and the modeling module whose ``apply_rotary_pos_emb`` it calls."""
        return tuple(attention_sites(self.hf))

    @_memoized
    def hooked_sites(self) -> tuple[AttentionSite, ...]:
        """:attr:`sites` where ropescope hooks the modeling code; none for a TransformerLens bridge,
        which is hooked at its own hook points (:mod:`ropescope.hooks.bridge`)."""
        return () if self.bridge else self.sites

    @_memoized
    def sites_by_layer(self) -> dict[int, AttentionSite]:
        return {site.layer: site for site in self.hooked_sites}

    @_memoized
    def logit_rules(self) -> tuple[LogitRule | None, ...]:
        """The logit rule of every layer, read from its attention module and the RoPE geometry
        (``None`` on a hybrid model's layers without softmax attention)."""
        rules: list[LogitRule | None] = [None] * self.n_layers
        layer_types = list(getattr(self.config, "layer_types", None) or [None] * self.n_layers)
        indexers = [m for m in self.hf.modules() if isinstance(getattr(m, "indexer", None), torch.nn.Module)]
        # what a layer reusing an earlier layer's key selection sees densely: the model's smallest indexer's
        shared_selection = min((_dense_up_to(m, 0) or 0 for m in indexers), default=0)
        for site in self.sites:
            scaling = getattr(site.module, "scaling", None)
            scaling = float(scaling if scaling is not None else self.geometry.layer_head_dim(site.layer) ** -0.5)
            softcap = getattr(site.module, "attn_logit_softcapping", None)
            if softcap is None:
                softcap = getattr(self.config, "attn_logit_softcapping", None)
            window = self.geometry.layers[site.layer].window
            # True / "all": every token sees every token; "vision" (Gemma 4): only image tokens see each
            # other, so text prompts stay causal. A multimodal wrapper builds its text decoder's mask
            # itself (PaliGemma: bidirectional on an image prefix, causal on text), so there the
            # wrapper's own config says, not the text config's flag.
            owner = self.hf.config if self.config is not self.hf.config else self.config
            bidirectional = getattr(owner, "use_bidirectional_attention", False)
            causal = not (bidirectional is True or bidirectional == "all")
            sinks = getattr(site.module, "sinks", None)
            if isinstance(sinks, torch.Tensor):
                sinks = tuple(float(s) for s in sinks.detach().float().cpu().reshape(-1))
            else:
                sinks = None
            chunk = None
            if layer_types[site.layer] == "chunked_attention":  # Llama 4: attention_chunk_size per chunk
                chunk = int(getattr(self.config, "attention_chunk_size", 0) or 0) or None
            dense = _dense_up_to(site.module, shared_selection)
            rules[site.layer] = LogitRule(
                scaling, float(softcap) if softcap else None, window, causal, sinks, chunk, dense
            )
        return tuple(rules)

    @property
    def weights_fingerprint(self) -> str:
        """:func:`weights_fingerprint` of the model's weights now: computed once, and again only after
        :func:`state_key` says a parameter, buffer or the config changed (a version counter or storage
        address, read without touching any value: no host read on a call that changed nothing)."""
        key = state_key(self.hf)
        kept = self.memo.get("_fingerprint")
        if kept is None or key is None or kept[0] != key:
            kept = (key, self._fingerprint_now())
            self.memo["_fingerprint"] = kept
        return kept[1]

    def _fingerprint_now(self) -> str:
        """sha256 (16 hex digits) over the config and, for every parameter, its name, shape, dtype and
        :data:`FINGERPRINT_SAMPLES` values at evenly spaced flat indices (every value of a smaller
        one), as float32: it changes when the weights behind a model name change (a fine-tune, a merge,
        another revision), so a saved state can tell whether it belongs to these weights. A content
        fingerprint, not a full hash: it reads a few MB, never the whole model (a tied embedding the
        forward reads a few rows of would otherwise be paged in whole: 0.6 GB on Gemma 3 270M)."""
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True, default=str).encode())
        with torch.no_grad():
            for name, param in sorted(self.hf.named_parameters()):
                flat = param.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // FINGERPRINT_SAMPLES)].float().cpu().numpy()
                digest.update(f"{name}:{tuple(param.shape)}:{param.dtype}".encode())
                digest.update(sample.tobytes())
        return digest.hexdigest()[:16]

    def check_head(self, layer: int, head: int) -> None:
        """Raise :class:`RopescopeError` unless ``(layer, head)`` exists (0-based)."""
        if not 0 <= layer < self.n_layers:
            raise RopescopeError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        if not self.geometry.layers[layer].attention:
            kind = self.geometry.layers[layer].layer_type
            raise RopescopeError(f"layer {layer} is a {kind} layer, not softmax attention: it has no heads to look at")
        if not 0 <= head < self.n_heads:
            raise RopescopeError(f"head {head} is out of range: the model has heads 0..{self.n_heads - 1}")


def _dense_up_to(attention: torch.nn.Module, shared: int) -> int | None:
    """The longest prompt over which a sparse-attention layer still attends to every visible key
    (:attr:`LogitRule.dense_up_to`); None for a dense layer. An indexer keeping ``index_topk`` keys per
    query: that many tokens; ``topk_blocks`` blocks of ``block_size`` keys (MiniMax M3) or
    ``block_topk`` blocks of ``compress_ratio`` tokens (Qwen4-Exp): their product; a layer reusing an
    earlier layer's selection (``skip_topk``): ``shared``, the smallest of the model's indexers'; an
    indexer of another kind: 0 (every prompt refused)."""
    if not hasattr(attention, "indexer"):
        return None
    indexer = attention.indexer
    if indexer is None:
        # a dense layer of a model with sparse ones (MiniMax M3's full-attention layers), or a shared selection
        return shared if getattr(attention, "skip_topk", False) else None
    top_k = getattr(indexer, "index_topk", None)
    if isinstance(top_k, int):
        return top_k
    for blocks, size in (("topk_blocks", "block_size"), ("block_topk", "compress_ratio")):  # MiniMax M3, Qwen4 QSA
        blocks, size = getattr(indexer, blocks, None), getattr(indexer, size, None)
        if isinstance(blocks, int) and isinstance(size, int):
            return blocks * size
    return 0


def state_key(hf: torch.nn.Module) -> tuple | None:
    """What everything ropescope reads off ``hf`` once (geometry, sites, logit rules, weights
    fingerprint) depends on, read without touching a value: every parameter's and buffer's name,
    storage address, shape, dtype, device and in-place version counter, and the config's content.
    None where a tensor keeps no version counter (made under ``inference_mode``: LongRoPE's and
    dynamic NTK's buffers, rewritten by their forward): such a model is read afresh on every call."""
    tensors = []
    try:
        for name, tensor in itertools.chain(hf.named_parameters(), hf.named_buffers()):
            tensors.append((name, tensor.data_ptr(), tensor._version, tuple(tensor.shape), tensor.dtype, tensor.device))
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None
    config = getattr(hf, "config", None)
    text = json.dumps(config.to_dict(), sort_keys=True, default=str) if hasattr(config, "to_dict") else repr(config)
    return tuple(tensors), text


# what was read off each raw model object (a Hugging Face model, a bridge, an nnsight wrapper):
# (state_key, the anatomy's memo), so a notebook calling profile() on the same unchanged model again
# reads no buffer, site or weight again (a LoadedModel keeps its own anatomy). Weak: the memo holds
# submodules, never the model, so the entry goes when the model does.
_READ: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inspect_model(model, geometry: RopeGeometry | None = None) -> ModelAnatomy:
    """The :class:`ModelAnatomy` of ``model`` (an anatomy or a loaded model's own is returned as it
    is; a raw Hugging Face model, a TransformerLens bridge or an nnsight wrapper is read now: the
    wrapper's own Hugging Face model, weights loaded where nnsight left them on the meta device).

    ``geometry`` overrides the geometry read from the buffers (e.g. another pair layout, to test the
    self-check). Raises :class:`~ropescope.errors.NoRopeError` for a model without RoPE.
    """
    anatomy = model if isinstance(model, ModelAnatomy) else getattr(model, "anatomy", None)
    if isinstance(anatomy, ModelAnatomy):
        if geometry is None or geometry is anatomy.geometry:
            return anatomy
        model = anatomy.runnable
    if is_nnsight(model):  # the wrapped Hugging Face model, read and hooked as itself
        model = unwrap_nnsight(model)
    bridge = is_bridge(model)
    hf = model.original_model if bridge else model
    key = state_key(hf) if geometry is None else None
    if key is not None:
        try:
            kept = _READ.get(model)
        except TypeError:  # an object that cannot be weakly referenced: read every time
            kept = None
        if kept is not None and kept[0] == key:  # the same model, unchanged: what was read, not read again
            memo = kept[1]
            return ModelAnatomy(model, hf, text_config(hf), memo["geometry"], bridge, memo=memo)
    model_type = getattr(hf.config, "model_type", "?")
    refuse_encoder_decoder(hf.config, model_type, hf)
    refuse_drafter(type(hf), model_type)
    anatomy = ModelAnatomy(model, hf, text_config(hf), geometry or read_geometry(hf), bridge)
    if key is not None:
        anatomy.memo["geometry"] = anatomy.geometry
        try:
            _READ[model] = (key, anatomy.memo)  # the memo refers to submodules only, never to the model
        except TypeError:
            pass
    return anatomy

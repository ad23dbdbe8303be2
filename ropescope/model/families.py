"""Where each architecture family keeps what ropescope hooks.

ropescope reads q and k where the model itself applies RoPE: every Hugging Face family listed here
calls a module-level ``apply_rotary_pos_emb(q, k, cos, sin, ...)`` on tensors laid out
``[batch, heads, tokens, dims]`` after any QK-norm. Values come from the output of the layer's value
projection. One small entry per family says what differs; everything else is shared.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from dataclasses import dataclass

import torch

from ropescope.errors import UnsupportedModelError


@dataclass(frozen=True)
class FamilyAdapter:
    """What differs between families: the RoPE pair layout (used only where the family's own
    ``rotate_half`` does not tell it, :func:`detect_layout`), the module whose output holds the
    values, and how the values sit in that output: ``"alone"`` (``v_proj``: ``[B, S, kv*d]``),
    ``"qkv"`` (one fused projection ``[q | k | v]``, Phi-3), ``"per_head_qkv"`` (per head
    ``[q, k, v]`` blocks, GPT-NeoX), ``"split_heads"`` (the attention module's own ``_split_heads``
    cuts the fused projection, Falcon's three layouts) or ``"qkv_tuple"`` (a module returning
    ``(q, k, v)``, ZAYA's convolutional projection) or ``"mp_qkv"`` (CodeGen's blocks, see
    :func:`mp_qkv_parts`)."""

    layout: str = "halves"
    value_module: str = "v_proj"
    value_packing: str = "alone"


DEFAULT = FamilyAdapter()

# Families whose modeling code ropescope has been tested against (tests/tiny.py builds one of each).
FAMILIES: dict[str, FamilyAdapter] = {
    "gemma": DEFAULT,
    "gemma2": DEFAULT,
    "gemma3": DEFAULT,
    "gemma3_text": DEFAULT,
    "llama": DEFAULT,
    "mistral": DEFAULT,
    "qwen2": DEFAULT,
    "qwen3": DEFAULT,
    "phi": DEFAULT,
    "phi3": FamilyAdapter(value_module="qkv_proj", value_packing="qkv"),
    "phi4_multimodal": FamilyAdapter(value_module="qkv_proj", value_packing="qkv"),
    "dbrx": FamilyAdapter(value_module="Wqkv", value_packing="qkv"),  # clamped to +-clip_qkv first
    "codegen": FamilyAdapter(layout="interleaved", value_module="qkv_proj", value_packing="mp_qkv"),
    "zaya": FamilyAdapter(value_module="qkv_proj", value_packing="qkv_tuple"),  # CCA: returns (q, k, v)
    "persimmon": FamilyAdapter(value_module="query_key_value", value_packing="per_head_qkv"),
    "falcon": FamilyAdapter(value_module="query_key_value", value_packing="split_heads"),
    "gpt_neox": FamilyAdapter(value_module="query_key_value", value_packing="per_head_qkv"),
    "gpt_neox_japanese": FamilyAdapter(value_module="query_key_value", value_packing="per_head_qkv"),
    "olmo2": DEFAULT,
    "cohere": FamilyAdapter(layout="interleaved"),
    "glm": FamilyAdapter(layout="interleaved"),
}


def family_adapter(model_type: str) -> FamilyAdapter:
    """The adapter of ``model_type``; unknown families get the Hugging Face default (halves)."""
    return FAMILIES.get(model_type, DEFAULT)


def text_config(model: torch.nn.Module):
    """The language-model config (``text_config`` of multimodal wrappers)."""
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def decoder_without_head(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder of ``model`` without its language-model head, for forward passes that need no
    logits (they would multiply every token by the whole vocabulary, and page in a tied embedding
    matrix the model otherwise reads a few rows of): the module named by ``base_model_prefix``, else
    the causal LM's ``model`` (Llama 4's text model, whose prefix names the multimodal wrapper's
    attribute), else ``model`` itself."""
    base = getattr(model, getattr(model, "base_model_prefix", "") or "", None)
    if not isinstance(base, torch.nn.Module) and isinstance(getattr(model, "model", None), torch.nn.Module):
        base = model.model
    return base if isinstance(base, torch.nn.Module) else model


def config_value(cfg, key: str):
    """``cfg.key``, or None where it is unset or set per layer (transformers refuses one model-wide
    value of Gemma 4's ``head_dim`` and ``num_key_value_heads``)."""
    try:
        return getattr(cfg, key, None)
    except Exception as exc:  # noqa: BLE001 - transformers' AmbiguousGlobalPerLayerAttributeError
        if "per-layer" in str(exc):
            return None
        raise


def pass_sources(site: AttentionSite) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """Where the unrotated dims of a partially rotary layer's q and k can be read when the layer hands
    only its rotary dims to the RoPE function and concatenates the rest afterwards (Phi, StableLM,
    Persimmon / Fuyu): ``(q_module, k_module, packing)``, the modules whose outputs hold the whole
    head vector just before the split. ``packing`` is ``"heads"`` (a per-head norm's 4-D output, in
    either axis order), ``"flat"`` (a projection's ``[B, S, H*D]``) or ``"per_head_qkv"`` (one fused
    projection, per head ``[q, k, v]``). Which part is which is checked against the RoPE input
    itself on every call (:meth:`ropescope.hooks.observe.Capture.at_rope`)."""
    module = site.module
    norms = [getattr(module, name, None) for name in ("q_layernorm", "k_layernorm")]
    if getattr(module, "qk_layernorm", False) and all(isinstance(n, torch.nn.Module) for n in norms):
        return norms[0], norms[1], "heads"
    projections = [getattr(module, name, None) for name in ("q_proj", "k_proj")]
    if all(isinstance(p, torch.nn.Module) for p in projections):
        return projections[0], projections[1], "flat"
    fused = getattr(module, "query_key_value", None)
    if isinstance(fused, torch.nn.Module):
        return fused, fused, "per_head_qkv"
    split = getattr(module, "_split_heads", None)
    if isinstance(getattr(module, "qkv_proj", None), torch.nn.Module) and callable(split):
        if "mp_num" in inspect.signature(split).parameters:  # CodeGen's blocks: see mp_qkv_parts
            return module.qkv_proj, module.qkv_proj, "mp_qkv"
    raise UnsupportedModelError(
        f"layer {site.layer}: its unrotated q and k dims come out of no module ropescope can read "
        "(no q_layernorm/k_layernorm, q_proj/k_proj or query_key_value)"
    )


def is_mla(module: torch.nn.Module) -> bool:
    """Multi-head latent attention (DeepSeek V2/V3, Kimi, MiniCPM3, Mistral 4): RoPE turns a
    ``qk_rope_head_dim``-wide part of each query and one key shared by every head; the rest of q and
    k (``qk_nope_head_dim``) and the values come out of the latent up-projection ``kv_b_proj``."""
    return hasattr(module, "kv_b_proj") and isinstance(getattr(module, "qk_rope_head_dim", None), int)


@dataclass(frozen=True)
class AttentionSite:
    """One attention layer: its module, 0-based index, the modeling module it calls RoPE from, and
    how it calls it."""

    layer: int
    module: torch.nn.Module
    code_module: object
    rope_call: str = "pair"  # "pair": apply_rotary_pos_emb(q, k, cos, sin); "single": (x, cos, sin) per tensor
    # the modeling module's RoPE functions this layer's code names (DeepSeek V3: the plain one and
    # apply_rotary_pos_emb_interleave, chosen by config.rope_interleave); every one is hooked
    rope_functions: tuple[str, ...] = ("apply_rotary_pos_emb",)


ROPE_FUNCTION = "apply_rotary_pos_emb"
COMPLEX_ROPE_FUNCTION = "apply_rotary_emb"  # Llama 4, DeepSeek V2: (xq, xk, freqs_cis)


def forward_source(module: torch.nn.Module) -> str:
    """The source of the module's own ``forward`` (decorators unwrapped); empty where Python keeps none.
    Read once per function (reading and parsing it costs about 2 ms, at every layer of every call)."""
    return _source(inspect.unwrap(type(module).forward))


@functools.cache
def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def rope_call_position(source: str, names) -> int | None:
    """Where ``source`` first calls one of the RoPE functions ``names`` (None: it calls none)."""
    found = [match.start() for name in names if (match := re.search(rf"\b{name}\(", source))]
    return min(found) if found else None


def rope_functions(module: torch.nn.Module, code) -> tuple[str, ...]:
    """The module-level RoPE functions (``apply_rotary_pos_emb`` and variants such as
    ``apply_rotary_pos_emb_interleave``, same call shape) that the attention module's ``forward``
    names; the plain one where its source names none (it calls RoPE through a helper)."""
    names = [
        name
        for name, fn in vars(code).items()
        if (name.startswith(ROPE_FUNCTION) or name == COMPLEX_ROPE_FUNCTION)
        and callable(fn)
        and rope_call_kind(fn) is not None
    ]
    source = forward_source(module)
    used = tuple(sorted(name for name in names if rope_call_position(source, [name]) is not None))
    return used or ((ROPE_FUNCTION,) if ROPE_FUNCTION in names else ())


def plain_function(fn):
    """The Python function behind a modeling module's RoPE function. From transformers 5.25 on, with
    the ``kernels`` package installed (a dependency of 5.25), ``@use_kernel_forward_from_hub``
    turns a module-level function into an ``nn.Module`` instance whose ``forward(*args, **kwargs)``
    calls the original (or a hub kernel the user selected with ``kernelize``): its signature hides
    the call shape, so it is read off the original, kept in the forward's closure. Calling the
    instance itself stays the model's own call (ropescope wraps the instance, not the original)."""
    if isinstance(fn, torch.nn.Module):
        forward = type(fn).forward
        for name, cell in zip(forward.__code__.co_freevars, forward.__closure__ or (), strict=False):
            if name == "func" and inspect.isfunction(cell.cell_contents):
                return cell.cell_contents
    return fn


def rope_call_kind(fn) -> str | None:
    """How a modeling module's RoPE function is called: ``"pair"`` (q and k at once, most families),
    ``"single"`` (one tensor per call, q then k: Gemma 3n and Gemma 4), ``"single_sin_cos"`` (one
    ``[batch, tokens, heads, dims]`` tensor per call with ``sin`` before ``cos``, one value per pair,
    key first: GPT-J, from its sin/cos table), ``"complex"`` (q, k and
    ``freqs_cis``, the rotation as complex numbers on interleaved pairs: Llama 4, DeepSeek V2),
    ``None`` (none of these)."""
    if fn is None:
        return None
    try:
        names = list(inspect.signature(plain_function(fn)).parameters)
    except (TypeError, ValueError):  # a builtin or an object without a signature: no RoPE function of ours
        return None
    if names[:4] == ["q", "k", "cos", "sin"]:
        return "pair"
    if names[:3] == ["x", "cos", "sin"]:
        return "single"
    if names[:3] == ["tensor", "sin", "cos"]:
        return "single_sin_cos"
    if names[:3] == ["xq", "xk", "freqs_cis"]:
        return "complex"
    return None


def call_rope(function, kind: str, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``function`` (a RoPE function of ``kind``, not complex) applied to ``x`` alone (a pair call's
    query output), its angles given as ``cos`` and ``sin``."""
    if kind == "pair":
        return function(x, x.clone(), cos, sin)[0]
    if kind == "single_sin_cos":
        return function(x, sin, cos)
    return function(x, cos, sin)


def output_order(function, kind: str, dims: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """How ``function`` orders its output dims, read by calling it at angle 0 (cos 1, sin 0) on the
    vector ``0 .. dims-1`` in float32: ``order`` with ``output = input[..., order]`` and its inverse;
    None where the output is in input order (every family but DeepSeek-style interleaved MLA), or
    where the call cannot be made this way (a wrong guess is caught by the geometry self-check).
    Read once per function, kind and width (a modeling module's function does not change; a call that
    installs hooks would otherwise read it again, with a host read, every time)."""
    key = (function, kind, dims)
    try:
        if key not in _ORDERS:
            _ORDERS[key] = _output_order(function, kind, dims)
    except TypeError:  # an unhashable callable: read every time
        return _output_order(function, kind, dims)
    return _ORDERS[key]


_ORDERS: dict = {}  # (function, kind, dims) -> output_order's answer


def _output_order(function, kind: str, dims: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if kind == "complex":
        return None  # view_as_complex / view_as_real keep every pair where it was
    x = torch.arange(dims, dtype=torch.float32).view(1, 1, 1, dims)
    out = None
    for width in (dims, dims // 2):  # cos/sin as wide as the head, or one value per pair (GPT-OSS)
        cos, sin = torch.ones(1, 1, width), torch.zeros(1, 1, width)
        try:
            with torch.no_grad():
                out = call_rope(function, kind, x, cos, sin)
            break
        except (RuntimeError, ValueError, IndexError, TypeError):
            continue
    if out is None or out.shape[-1] != dims:
        return None  # not readable this way: taken as in input order, which the geometry self-check verifies
    order = out.reshape(-1).round().long()
    if torch.equal(order, torch.arange(dims)):
        return None
    if not torch.equal(torch.sort(order).values, torch.arange(dims)) or not torch.equal(out.reshape(-1), order.float()):
        raise UnsupportedModelError(
            f"the model's RoPE function {getattr(function, '__name__', '?')} changes its input at angle 0 "
            "(not a rotation); ropescope cannot read it"
        )
    return order, torch.argsort(order)


def rotation_layout(function, kind: str, dims: int) -> str | None:
    """The pair layout ``function`` rotates (see :func:`quarter_turn`), or None."""
    found = quarter_turn(function, kind, dims)
    return found[0] if found is not None else None


def quarter_turn(function, kind: str, dims: int) -> tuple[str, int] | None:
    """Which pairs ``function`` rotates, and which way, read by calling it at a quarter turn (cos 0,
    sin 1) on the vector ``1 .. dims``: ``("halves", 1)`` when the output is ``[-x2, x1]`` (dims ``k``
    and ``k + dims/2`` pair up, turned counter-clockwise as in the RoPE paper), ``("interleaved", 1)``
    when it is ``(-x[2k+1], x[2k])`` pair by pair, and turn ``-1`` for the same pairs turned the other
    way (``[x2, -x1]``: NanoChat's ``rotate_half``); None where the call cannot be made this way or
    the output is none of these (then ``rotate_half`` or the family table decides, and the geometry
    self-check verifies). This reads the helper the function really calls (GLM-4V's
    ``apply_rotary_pos_emb`` rotates with ``rotate_half_llm``, interleaved, while its module's
    ``rotate_half`` pairs halves)."""
    if kind == "complex" or dims < 2 or dims % 2:
        return None
    x = torch.arange(1.0, dims + 1.0).view(1, 1, 1, dims)
    for width in (dims, dims // 2):
        cos, sin = torch.zeros(1, 1, width), torch.ones(1, 1, width)
        try:
            with torch.no_grad():
                out = call_rope(function, kind, x, cos, sin)
        except (RuntimeError, ValueError, IndexError, TypeError):
            continue
        if out.shape != x.shape:
            return None
        half = dims // 2
        halves = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        interleaved = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
        for layout, turned in (("halves", halves), ("interleaved", interleaved)):
            if torch.equal(out, turned):
                return layout, 1
            if torch.equal(out, -turned):
                return layout, -1
        return None
    return None


def key_first(site: AttentionSite) -> bool:
    """Whether a layer rotating q and k in separate calls rotates its key first (GPT-J:
    ``k_rot = apply_rotary_pos_emb(k_rot, sin, cos)`` before the query), read off its ``forward``:
    the first RoPE call's first argument names a key."""
    source = forward_source(site.module)
    calls = [m for name in site.rope_functions for m in re.finditer(rf"\b{re.escape(name)}\(\s*(\w+)", source)]
    if not calls:
        return False
    first = min(calls, key=lambda m: m.start()).group(1)
    return first.startswith("k")


def forward_code(site: AttentionSite):
    """The code object of the layer's attention ``forward`` where that forward names its RoPE
    function (so calls made anywhere else inside the layer are not the attention's); None where it
    calls RoPE through a helper."""
    if rope_call_position(forward_source(site.module), site.rope_functions) is None:
        return None
    return getattr(inspect.unwrap(type(site.module).forward), "__code__", None)


def complex_head_axis(function, dims: int) -> int:
    """Where a complex-rotation function (``apply_rotary_emb(xq, xk, freqs_cis)``) expects the head
    axis of q and k: 2 for ``[batch, tokens, heads, dims]`` (Llama 4), 1 for ``[batch, heads,
    tokens, dims]`` (DeepSeek V2); read by calling it on a 3-token, 2-head probe in both layouts."""
    freqs = torch.polar(torch.ones(1, 3, dims // 2), torch.zeros(1, 3, dims // 2))
    fits = []
    for axis, shape in ((2, (1, 3, 2, dims)), (1, (1, 2, 3, dims))):
        x = torch.ones(shape)
        try:
            with torch.no_grad():
                out = function(x, x.clone(), freqs)[0]
        except (RuntimeError, ValueError, IndexError):
            continue
        if tuple(out.shape) == shape:
            fits.append(axis)
    if len(fits) != 1:
        raise UnsupportedModelError(
            f"cannot tell how {getattr(function, '__name__', 'its RoPE function')} lays out heads and tokens"
        )
    return fits[0]


# norms a layer may apply after RoPE (only where its forward calls them after the RoPE function):
# Llama 4's qk_norm; Hunyuan's query/key layernorm; NanoChat's q_norm/k_norm ("RoPE -> Norm")
POST_ROPE_NORMS = (("qk_norm", "qk_norm"), ("query_layernorm", "key_layernorm"), ("q_norm", "k_norm"))


def post_rope_norm(site: AttentionSite) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """The norms a layer applies to q and k *after* RoPE (Llama 4's L2 ``qk_norm``, one module called
    on q then on k; Hunyuan's ``query_layernorm`` and ``key_layernorm``; NanoChat's ``q_norm`` and
    ``k_norm``, where most families call those before RoPE), read off its ``forward``:
    the attention uses the normalised tensors, so head scores take them from those modules; None
    where the layer has none."""
    source = forward_source(site.module)
    rotated = rope_call_position(source, site.rope_functions)
    if rotated is None:
        return None
    for q_name, k_name in POST_ROPE_NORMS:
        q_norm, k_norm = getattr(site.module, q_name, None), getattr(site.module, k_name, None)
        if isinstance(q_norm, torch.nn.Module) and isinstance(k_norm, torch.nn.Module):
            if source.find(f"self.{q_name}(") > rotated:
                return q_norm, k_norm
    return None


def temperature_tuned(module: torch.nn.Module, q: torch.Tensor) -> torch.Tensor:
    """``q[B, H, S, D]`` of a NoPE layer as its attention uses it: Llama 4 multiplies the queries of
    its NoPE layers by ``1 + attn_scale * log(1 + floor((i + 1) / floor_scale))`` at position ``i``
    (1 for the first ``floor_scale - 1`` = 8,191 tokens), the same arithmetic as its own code."""
    if not getattr(module, "attn_temperature_tuning", False) or getattr(module, "use_rope", True):
        return q
    positions = torch.arange(q.shape[2], device=q.device)
    scales = torch.log1p(torch.floor((positions.float() + 1.0) / module.floor_scale)) * module.attn_scale + 1.0
    return (q * scales.view(1, 1, -1, 1)).to(q.dtype)


def pair_layout_of_order(order: torch.Tensor | None) -> str | None:
    """The pair layout of a RoPE function's input implied by the order of its output dims: a function
    that returns its input's even dims then its odd dims (DeepSeek's ``apply_rotary_pos_emb_interleave``)
    rotates interleaved pairs; None where the output keeps the input order (the layout is then
    read off ``rotate_half``)."""
    if order is None:
        return None
    dims = len(order)
    if torch.equal(order, torch.cat([torch.arange(0, dims, 2), torch.arange(1, dims, 2)])):
        return "interleaved"
    raise UnsupportedModelError(f"a RoPE function reorders its {dims} output dims in a way ropescope cannot read")


def refuse_drafter(model_class: type, model_type: str) -> None:
    """Refuse, in one line, a speculative-decoding drafter (Gemma 4's assistant models): its forward
    takes its main model's keys and values (``shared_kv_states``) and never runs on tokens alone."""
    forward = getattr(model_class, "forward", None)
    if forward is not None and "shared_kv_states" in inspect.signature(forward).parameters:
        raise UnsupportedModelError(
            f"model type {model_type!r} is a drafter for speculative decoding, run on its main model's keys and "
            "values (profile the main model)"
        )


def refuse_encoder_decoder(config, model_type: str, model: torch.nn.Module | None = None) -> None:
    """Refuse, in one line, an encoder-decoder model (T5Gemma 2): its decoder needs the encoder's
    output and decoder inputs, and its two stacks number their layers alike. With ``model``, also one
    whose config does not say so but whose attention modules are an encoder's and a decoder's
    (DiffusionGemma: a denoising decoder attending to the encoder's cached keys and values)."""
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"model type {model_type!r} is an encoder-decoder model: ropescope reads one decoder stack"
        )
    if model is not None:
        names = {type(m).__name__ for m in model.modules() if is_decoder_attention(m)}
        if any("EncoderTextAttention" in n for n in names) and any("DecoderTextAttention" in n for n in names):
            raise UnsupportedModelError(
                f"model type {model_type!r} pairs an encoder with a decoder reading its cache: "
                "ropescope reads one decoder stack"
            )


def is_decoder_attention(module: torch.nn.Module) -> bool:
    """An attention module of a decoder layer: it knows its layer index (an image or audio tower's
    attention, or a perceiver's, has none). LongCat-Flash names its two attention sublayers per
    decoder layer ``LongcatFlashMLA`` (numbered ``2 i`` and ``2 i + 1``, as its config counts them).
    A cross-attention module (``is_cross_attention``: keys from another modality, no RoPE) is none."""
    name = type(module).__name__
    if getattr(module, "is_cross_attention", False) is True:  # IDEFICS' gated attention to image features
        return False
    return ("Attention" in name or name.endswith("MLA")) and getattr(module, "layer_idx", None) is not None


def decoder_attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers' attention modules (:func:`is_decoder_attention`): the inner one where one
    wraps another of the same layer (DBRX's ``norm_attn_norm`` around its ``attn``, Mllama's decoder
    layer named ``...SelfAttentionDecoderLayer``), and the language model's where a vision tower
    numbers its layers too (DeepSeek-OCR 2's Qwen2 encoder)."""
    found = [m for _, m in model.named_modules() if is_decoder_attention(m)]

    def wraps_its_own(m: torch.nn.Module) -> bool:
        return any(c is not m and is_decoder_attention(c) and c.layer_idx == m.layer_idx for c in m.modules())

    found = [m for m in found if not wraps_its_own(m)]
    if len({m.layer_idx for m in found}) < len(found):  # a tower numbering its layers too: the language model's
        decoder = language_model(model)
        if decoder is not None:
            inside = {id(m) for m in decoder.modules()}
            own = [m for m in found if id(m) in inside]
            if own and len({m.layer_idx for m in own}) == len(own):
                return own
    return found


def language_model(model: torch.nn.Module) -> torch.nn.Module | None:
    """The language model of a multimodal wrapper (``get_decoder()``), None where there is none."""
    try:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    except Exception:  # noqa: BLE001 - a model without a decoder of its own
        return None
    return decoder if isinstance(decoder, torch.nn.Module) and decoder is not model else None


def attention_sites(model: torch.nn.Module) -> list[AttentionSite]:
    """Every attention layer of ``model`` whose code applies RoPE through ``apply_rotary_pos_emb``.

    Raises :class:`UnsupportedModelError` when the layers cannot be hooked.
    """
    cfg = text_config(model)
    if any(type(m).__module__.startswith("transformer_lens") for m in model.modules()):
        raise UnsupportedModelError(  # the bridge runs its own attention: read through its hook points
            "a TransformerLens bridge wraps this model's attention; ropescope reads it through the bridge's hooks"
        )
    types = list(getattr(cfg, "layer_types", None) or [])
    sites = []
    modules = decoder_attention_modules(model)
    if any(int(module.layer_idx) < 0 for module in modules):  # Zamba2: layer_idx=-1, the depth passed per call
        raise UnsupportedModelError(
            f"model type {cfg.model_type!r} runs one attention block at several depths: ropescope reads one module "
            "per layer"
        )
    for module in modules:
        index = int(module.layer_idx)
        if index < len(types) and types[index] in LINEAR_LAYER_TYPES:
            continue  # a hybrid's linear attention (MiniMax's lightning layers): no softmax over q.k to read
        if callable(getattr(getattr(module, "experts", None), "map", None)):
            raise UnsupportedModelError(
                f"model type {cfg.model_type!r} routes each token's queries to attention experts (mixture of attention "
                "heads): a query head is no fixed head, and ropescope measures fixed heads"
            )
        code = sys.modules.get(type(module).__module__)
        names = rope_functions(module, code) if code is not None else ()
        kinds = {rope_call_kind(getattr(code, name)) for name in names}
        if not names or len(kinds) != 1:
            raise UnsupportedModelError(
                f"model type {cfg.model_type!r} applies RoPE in a way ropescope cannot hook"
                + _supported_elsewhere(cfg.model_type)
            )
        sites.append(AttentionSite(int(module.layer_idx), module, code, kinds.pop(), names))
    found = {site.layer for site in sites}
    if len(found) != len(sites):
        twice = sorted({s.layer for s in sites if sum(t.layer == s.layer for t in sites) > 1})
        raise UnsupportedModelError(
            f"{sum(s.layer == twice[0] for s in sites)} attention stacks number their layers alike (an encoder and a "
            f"decoder, or looped modules) in model type {cfg.model_type!r}: ropescope reads one decoder stack"
        )
    missing = [i for i in range(int(cfg.num_hidden_layers)) if i not in found]
    softmax = [i for i in missing if i >= len(types) or types[i] in SOFTMAX_LAYER_TYPES]
    if not sites or softmax:
        raise UnsupportedModelError(
            f"found {len(sites)} attention layers in model type {cfg.model_type!r}, expected "
            f"{cfg.num_hidden_layers}" + _supported_elsewhere(cfg.model_type)
        )
    return sorted(sites, key=lambda s: s.layer)


def _supported_elsewhere(model_type: str) -> str:
    """The end of a refusal: for a family ropescope was tested on, that this transformers differs from
    the tested one (never "supported" beside its own refusal); else the families it was tested on."""
    import transformers

    from ropescope.version import TESTED_TRANSFORMERS

    if model_type in FAMILIES:
        return (
            f" with transformers {transformers.__version__}; ropescope was tested with transformers "
            f"{TESTED_TRANSFORMERS}, where this family works (pip install 'transformers=={TESTED_TRANSFORMERS}')"
        )
    return f"; families tested: {', '.join(sorted(FAMILIES))}"


# layer types of softmax attention: a hybrid model's other layers (linear attention, Mamba,
# convolution) are no attention sites, and a missing layer of one of these types is an error
LINEAR_LAYER_TYPES = {"linear_attention"}  # attention without a softmax of q.k: another kind of layer
SOFTMAX_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention", "attention", "global", "local"}


def other_layers(model: torch.nn.Module, sites: list[AttentionSite]) -> dict[int, str]:
    """The layers of a hybrid model that are no softmax attention, with their type from the config
    (Qwen3-Next "linear_attention", Bamba "mamba", LFM "conv")."""
    cfg = text_config(model)
    found = {site.layer for site in sites}
    types = list(getattr(cfg, "layer_types", None) or [])
    return {i: str(types[i]) for i in range(int(cfg.num_hidden_layers)) if i not in found and i < len(types)}


def detect_layout(model: torch.nn.Module) -> str | None:
    """The RoPE pair layout the model's own code uses, read off its ``rotate_half`` on a probe vector:
    ``"halves"`` (dims ``k`` and ``k + r/2`` pair up) or ``"interleaved"`` (``2k`` and ``2k + 1``);
    ``None`` when the code has no ``rotate_half`` or it is neither (then the family table decides)."""
    for _, module in model.named_modules():
        if is_decoder_attention(module):
            fn = getattr(sys.modules.get(type(module).__module__), "rotate_half", None)
            if fn is None:
                return None
            x = torch.arange(1.0, 9.0)[None]
            try:
                y = fn(x)
            except Exception:  # noqa: BLE001 - an unusual signature: fall back to the table
                return None
            if torch.equal(y, torch.cat([-x[..., 4:], x[..., :4]], dim=-1)):
                return "halves"
            if torch.equal(y, torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)):
                return "interleaved"
            return None
    return None


CODEGEN_MP_NUM = 4  # CodeGen's forward cuts its fused projection into 4 blocks (TPU-v4 cores), fixed in its code


def mp_qkv_parts(output: torch.Tensor, attention: torch.nn.Module, n_heads: int) -> dict[str, torch.Tensor]:
    """CodeGen's fused ``qkv_proj`` output ``[B, S, 3 * H * d]`` cut as its forward cuts it: 4
    blocks of ``[q | v | k]`` parts, each part's heads by the module's own ``_split_heads``;
    ``{"q", "k", "v"}``, each ``[B, S, H, d]``."""
    blocks = output.reshape(*output.shape[:-1], CODEGEN_MP_NUM, -1)
    local = attention.head_dim * n_heads // CODEGEN_MP_NUM
    q, v, k = torch.split(blocks, local, dim=-1)
    split = attention._split_heads
    return {
        name: split(x, n_heads, attention.head_dim, mp_num=CODEGEN_MP_NUM)
        for name, x in zip("qvk", (q, v, k), strict=True)
    }


def values_of(
    output: torch.Tensor, packing: str, n_heads: int, n_kv: int, attention: torch.nn.Module | None = None
) -> torch.Tensor:
    """``[B, kv_heads, S, d]`` values out of the value module's output ``[B, S, ...]`` (``attention``:
    the layer's attention module, whose own ``_split_heads`` cuts a ``"split_heads"`` projection)."""
    if packing == "mp_qkv":  # CodeGen: [B, S, H, d] values cut as its forward cuts them
        return mp_qkv_parts(output, attention, n_heads)["v"].transpose(1, 2)
    if packing == "qkv_tuple":  # a projection module that returns (q, k, v), each [B, S, heads, d]
        output = output[2]
        return output.reshape(output.shape[0], output.shape[1], n_kv, -1).transpose(1, 2)
    batch, seq = output.shape[0], output.shape[1]
    clip = getattr(attention, "clip_qkv", None)
    if clip is not None:  # DBRX clamps its fused projection's output before splitting it
        output = output.clamp(-clip, clip)
    if packing == "split_heads":  # Falcon: the module's own cut, then its forward's [B, kv, S, d]
        value = attention._split_heads(output)[2]
        return value.transpose(1, 2).reshape(batch, n_kv, seq, -1)
    if packing == "qkv":  # [q (heads*d) | k (kv*d) | v (kv*d)]
        d = output.shape[-1] // (n_heads + 2 * n_kv)
        return output[..., (n_heads + n_kv) * d :].reshape(batch, seq, n_kv, d).transpose(1, 2)
    if packing == "per_head_qkv":  # per head [q, k, v]
        per_head = output.view(batch, seq, n_kv, -1)
        d = per_head.shape[-1] // 3
        return per_head[..., 2 * d :].transpose(1, 2)
    return output.view(batch, seq, n_kv, -1).transpose(1, 2)


def value_module(site: AttentionSite, model_type: str) -> torch.nn.Module:
    """The module of one attention layer whose output holds the values (see :func:`values_of`): the
    value projection, or the key projection on a layer that uses its keys as values (K = V)."""
    name = family_adapter(model_type).value_module
    module = getattr(site.module, name, None)
    if is_mla(site.module):
        return site.module.kv_b_proj  # MLA: keys' no-RoPE part and values, per head, from the latent
    if getattr(site.module, "is_kv_shared_layer", False):
        raise UnsupportedModelError(
            f"layer {site.layer} of model type {model_type!r} reuses another layer's keys and values (KV sharing, "
            "as in Gemma 3n and Gemma 4), which ropescope does not measure yet"
        )
    if module is None and getattr(site.module, "use_alternative_attention", False):
        return site.module.k_proj  # K = V (Gemma 4's global layers): the values are the key projection's output
    if module is None:
        raise UnsupportedModelError(f"layer {site.layer} of model type {model_type!r} has no value projection {name!r}")
    return module

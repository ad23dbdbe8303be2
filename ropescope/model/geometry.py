"""RoPE geometry: the exact frequencies, rotary dimensions and pair layout of a loaded model.

Conventions (the paper's notation): the rotary part of a head vector has ``r`` dimensions, cut into
``r/2`` two-dimensional *chunks*. Chunk ``k`` turns by ``g_k`` radians per token; chunk 0 is the
fastest. In the ``halves`` layout (Hugging Face ``rotate_half``) chunk ``k`` is dims ``(k, k + r/2)``;
in the ``interleaved`` layout (GPT-J, Cohere, GLM) it is dims ``(2k, 2k + 1)``.

Frequencies are never re-derived from ``theta``: they are copied from the model's own ``inv_freq``
buffers (one per layer type where the model has several, e.g. Gemma 3's 10k sliding and 1M global
layers).
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import sys
from dataclasses import dataclass, replace

import numpy as np
import torch

from ropescope.errors import NoRopeError, UnsupportedModelError
from ropescope.model.families import (
    FAMILIES,
    attention_sites,
    config_value,
    decoder_attention_modules,
    detect_layout,
    family_adapter,
    forward_source,
    is_decoder_attention,
    is_mla,
    language_model,
    other_layers,
    output_order,
    pair_layout_of_order,
    quarter_turn,
    text_config,
)
from ropescope.model.nope import layers_without_rope, rope_functions_called

LAYOUTS = ("halves", "interleaved")


@dataclass(frozen=True)
class LayerRope:
    """RoPE parameters of one attention layer.

    ``inv_freq`` holds ``g_k`` for every chunk in rad/token (float64 copy of the model's buffer);
    ``attention_scaling`` multiplies cos and sin (1.0 except for YaRN-like schemes); ``theta`` is
    the configured base, for labels only (``None`` where the config does not state one);
    ``window`` is the sliding-attention window in tokens (``None`` for global attention).
    ``rope`` is False on a NoPE layer (the model applies no rotation there: SmolLM3's every fourth
    layer, Cohere 2's global layers); its ``inv_freq`` is all zeros, so no chunk rotates.
    ``attention`` is False on a hybrid model's layers that are no softmax attention (Qwen3-Next's
    linear attention, Bamba's Mamba layers): nothing is measured there, they keep the model's
    numbering, and ``layer_type`` says what they are.
    ``head_dim`` and ``kv_heads`` are this layer's own head size and key/value head count where they
    differ from the model's largest (Gemma 4: 512-dim global heads with their own KV-head count beside
    256-dim sliding ones); ``None`` means the model-wide value. The layer's rotary dims are
    ``2 * len(inv_freq)``. ``kv_source`` is the earlier layer whose keys and values this layer reuses
    (KV sharing: Gemma 3n's and Gemma 4's last layers); such a layer makes queries only, so its key
    and value statistics are absent (NaN) and its heads are scored against the source layer's keys.
    ``shared_key`` is False on an MLA layer without RoPE (Mistral Large 4's every fourth layer): its
    keys are per head and none is the one RoPE key an MLA layer shares across its heads, so there is
    nothing to measure in k there and its key statistics are absent (NaN), as a KV-sharing layer's.
    """

    inv_freq: np.ndarray
    attention_scaling: float
    layer_type: str | None
    theta: float | None
    window: int | None = None
    rope: bool = True
    attention: bool = True
    head_dim: int | None = None
    kv_heads: int | None = None
    kv_source: int | None = None
    v_heads: int | None = None
    shared_key: bool = True

    def span(self, context: int) -> int:
        """Longest distance a query of this layer can look back over ``context`` tokens."""
        return min(context, self.window) if self.window else context


@dataclass(frozen=True)
class RopeGeometry:
    """Where and how fast RoPE turns each chunk, for every layer of one model.

    ``head_dim`` and ``rotary_dim`` are the largest over the layers: the width of every
    ``[layers, heads, chunks]`` array. Where layers differ (:attr:`ragged`, Gemma 4), a layer's own
    sizes are :meth:`layer_head_dim`, :meth:`layer_rotary_dim` and :meth:`layer_chunks`, and the
    chunks (and KV heads) a layer does not have are NaN in every array.
    """

    head_dim: int
    rotary_dim: int
    layout: str
    layers: tuple[LayerRope, ...]
    turn: int = 1  # 1: pairs turn counter-clockwise by +m*g (the paper's RoPE); -1: the other way (NanoChat)

    @property
    def n_chunks(self) -> int:
        return self.rotary_dim // 2

    def __repr__(self) -> str:
        thetas = sorted({layer.theta for layer in self.layers if layer.theta}, key=float)
        windows = sorted({layer.window for layer in self.layers if layer.window})
        theta = " / ".join(f"{t:,.0f}" for t in thetas) or "not stated"
        window = f", sliding window {' / '.join(map(str, windows))} on some layers" if windows else ""
        nope = self.nope_layers
        nope_text = f", NoPE layers {', '.join(map(str, nope))}" if nope else ""
        others = len(self.layers) - len(self.attention_layers)
        nope_text += f", {others} layers without softmax attention" if others else ""
        shared = [i for i, lr in enumerate(self.layers) if lr.kv_source is not None]
        nope_text += f", layers {', '.join(map(str, shared))} reuse earlier layers' keys and values" if shared else ""
        unkeyed = [i for i, lr in enumerate(self.layers) if not lr.shared_key]
        nope_text += f", layers {', '.join(map(str, unkeyed))} have no shared RoPE key (MLA)" if unkeyed else ""
        if len({self.layer_head_dim(i) for i in self.attention_layers}) > 1:
            sizes = sorted({(self.layer_head_dim(i), self.layer_rotary_dim(i)) for i in self.attention_layers})
            heads = "head_dim / rotary_dim " + ", ".join(f"{h} / {r}" for h, r in sizes) + " by layer"
            return f"RopeGeometry({self.n_layers} layers, {heads} ({self.layout}), theta {theta}{window}{nope_text})"
        return (
            f"RopeGeometry({self.n_layers} layers, head_dim {self.head_dim}, rotary_dim {self.rotary_dim} "
            f"({self.n_chunks} chunks, {self.layout}), theta {theta}{window}{nope_text})"
        )

    @property
    def nope_layers(self) -> tuple[int, ...]:
        """The attention layers that apply no RoPE (no chunk rotates there)."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.attention and not layer.rope)

    @property
    def attention_layers(self) -> tuple[int, ...]:
        """The layers with softmax attention (all but a hybrid model's linear / Mamba / conv layers)."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.attention)

    @property
    def rotating_layers(self) -> tuple[int, ...]:
        """The attention layers that apply RoPE."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.attention and layer.rope)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def ragged(self) -> bool:
        """True when layers have heads of different sizes or KV-head counts (Gemma 4)."""
        return any(
            lr.head_dim is not None
            or lr.kv_heads is not None
            or lr.kv_source is not None
            or lr.v_heads is not None
            or not lr.shared_key
            for lr in self.layers
        ) or any(2 * len(lr.inv_freq) != self.rotary_dim for lr in self.layers)

    def layer_head_dim(self, layer: int) -> int:
        """Head size of ``layer`` in dims."""
        return self.layers[layer].head_dim or self.head_dim

    def layer_rotary_dim(self, layer: int) -> int:
        """Dims of ``layer``'s heads that RoPE acts on (``2 * chunks``)."""
        return 2 * len(self.layers[layer].inv_freq)

    def layer_chunks(self, layer: int) -> int:
        """Chunks of ``layer``'s heads (the first ``layer_chunks`` columns of its arrays)."""
        return len(self.layers[layer].inv_freq)

    def layer_sizes(self, heads: int, tensor: str = "q") -> list[tuple[int, int]]:
        """``(heads, chunks)`` of every layer for ``tensor``: ``heads`` query heads for q; for k and v
        each layer's own count, ``heads`` being the most of any layer (none where the layer reuses
        another layer's keys and values, nor a key where an MLA layer without RoPE has no shared RoPE
        key; MLA: one shared RoPE key, a value per query head)."""

        def count(layer: int, lr: LayerRope) -> int:
            if tensor == "q":
                return heads
            if lr.kv_source is not None or (tensor == "k" and not self.makes_keys(layer)):
                return 0
            if tensor == "v" and lr.v_heads is not None:
                return lr.v_heads
            return lr.kv_heads or heads

        return [(count(i, lr), len(lr.inv_freq)) for i, lr in enumerate(self.layers)]

    def makes_keys(self, layer: int) -> bool:
        """Whether ``layer`` makes keys of its own to measure: not one reusing an earlier layer's
        (KV sharing), nor an MLA layer without RoPE, which has no shared RoPE key (Mistral Large 4)."""
        lr = self.layers[layer]
        return lr.kv_source is None and lr.shared_key

    def absent(self, heads: int, tensor: str = "q") -> np.ndarray:
        """``[layers, heads, chunks]`` bool: True for each head and chunk a layer does not have."""
        out = np.ones((self.n_layers, heads, self.n_chunks), dtype=bool)
        for i, (h, c) in enumerate(self.layer_sizes(heads, tensor)):
            out[i, :h, :c] = False
        return out

    def frequency_table(self) -> np.ndarray:
        """``[layers, chunks]``: every layer's frequencies in rad/token, NaN past a layer's own chunks."""
        table = np.full((self.n_layers, self.n_chunks), np.nan)
        for i, lr in enumerate(self.layers):
            table[i, : len(lr.inv_freq)] = lr.inv_freq
        return table

    def frequencies(self, layer: int) -> np.ndarray:
        """Angular frequency of every chunk of ``layer`` in rad/token (chunk 0 fastest)."""
        return self.layers[layer].inv_freq

    def wavelengths(self, layer: int) -> np.ndarray:
        """Tokens per full turn of every chunk of ``layer`` (``2*pi/g_k``; inf for g_k = 0)."""
        with np.errstate(divide="ignore"):
            return 2 * math.pi / self.layers[layer].inv_freq

    def semantic_boundary(self, layer: int, context: int, max_angle: float = 1.0) -> int:
        """First chunk that turns less than ``max_angle`` radians across ``context`` tokens
        (or across the layer's sliding window, if shorter).

        Chunks at or after the returned index are on the "semantic" side (the paper's Section 6);
        ``layer_chunks(layer)`` means no chunk qualifies.
        """
        lr = self.layers[layer]
        slow = np.nonzero(lr.inv_freq * lr.span(context) < max_angle)[0]
        return int(slow[0]) if len(slow) else len(lr.inv_freq)

    def with_layout(self, layout: str) -> RopeGeometry:
        """The same frequencies with another pair layout (used to test the self-check)."""
        return RopeGeometry(self.head_dim, self.rotary_dim, check_layout(layout), self.layers, self.turn)

    def to_dict(self) -> dict:
        return {
            "head_dim": self.head_dim,
            "rotary_dim": self.rotary_dim,
            "layout": self.layout,
            **({"turn": self.turn} if self.turn != 1 else {}),
            "layers": [
                {
                    "inv_freq": [float(g) for g in lr.inv_freq],
                    "attention_scaling": lr.attention_scaling,
                    "layer_type": lr.layer_type,
                    "theta": lr.theta,
                    "window": lr.window,
                    "rope": lr.rope,
                    "attention": lr.attention,
                    **({"head_dim": lr.head_dim} if lr.head_dim is not None else {}),
                    **({"kv_heads": lr.kv_heads} if lr.kv_heads is not None else {}),
                    **({"kv_source": lr.kv_source} if lr.kv_source is not None else {}),
                    **({"v_heads": lr.v_heads} if lr.v_heads is not None else {}),
                    **({"shared_key": False} if not lr.shared_key else {}),
                }
                for lr in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> RopeGeometry:
        """The geometry saved by :meth:`to_dict`; ``ValueError`` naming the field when any value has
        the wrong type (a string where a number belongs, a fractional head count, a non-boolean flag)."""
        if not isinstance(d, dict) or not isinstance(d.get("layers"), list):
            raise ValueError("geometry must be an object with a list of layers")
        layers = []
        for i, lr in enumerate(d["layers"]):
            if not isinstance(lr, dict):
                raise ValueError(f"geometry layer {i} is not an object")
            field = f"geometry layer {i} "
            layers.append(
                LayerRope(
                    np.asarray(_number_list(lr.get("inv_freq"), field + "inv_freq"), dtype=np.float64),
                    _number(lr.get("attention_scaling"), field + "attention_scaling"),
                    _optional_text(lr.get("layer_type"), field + "layer_type"),
                    None if lr.get("theta") is None else _number(lr["theta"], field + "theta"),
                    _optional_int(lr.get("window"), field + "window"),
                    _flag(lr.get("rope", True), field + "rope"),  # saved before NoPE layers were known: rotates
                    _flag(lr.get("attention", True), field + "attention"),
                    _optional_int(lr.get("head_dim"), field + "head_dim"),
                    _optional_int(lr.get("kv_heads"), field + "kv_heads"),
                    _optional_int(lr.get("kv_source"), field + "kv_source", minimum=0),
                    _optional_int(lr.get("v_heads"), field + "v_heads"),
                    _flag(lr.get("shared_key", True), field + "shared_key"),  # saved before it was known
                )
            )
        return cls(
            _optional_int(d.get("head_dim"), "geometry head_dim", required=True),
            _optional_int(d.get("rotary_dim"), "geometry rotary_dim", required=True),
            check_layout(d.get("layout")),
            tuple(layers),
            _turn(d.get("turn", 1)),
        )


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{field} must be a number, got {value!r:.40}")
    return float(value)


def _number_list(value, field: str) -> list[float]:
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list of numbers, got {type(value).__name__}")
    return [_number(v, field) for v in value]


def _optional_int(value, field: str = "value", minimum: int = 1, required: bool = False) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{field} must be an integer of at least {minimum}, got {value!r:.40}")
    return int(value)


def _optional_text(value, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{field} must be text, got {value!r:.40}")
    return value


def _flag(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false, got {value!r:.40}")
    return value


def check_layout(layout: str) -> str:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"unknown RoPE layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return layout


def chunk_pair_indices(rotary_dim: int, layout: str) -> tuple[list[int], list[int]]:
    """The two dims of every chunk: ``(first, second)`` index lists of length ``rotary_dim/2``."""
    half = rotary_dim // 2
    if check_layout(layout) == "halves":
        return list(range(half)), list(range(half, rotary_dim))
    return list(range(0, rotary_dim, 2)), list(range(1, rotary_dim, 2))


def chunk_dims(geometry: RopeGeometry, layer: int | None = None) -> np.ndarray:
    """``[chunks, 2]``: the two head dims of every chunk in the model's layout (of ``layer``'s own
    heads where given: in the halves layout a chunk's second dim depends on the head's rotary dims)."""
    rotary = geometry.rotary_dim if layer is None else geometry.layer_rotary_dim(layer)
    first, second = chunk_pair_indices(rotary, geometry.layout)
    return np.stack([first, second], axis=1)


def split_pairs(x: torch.Tensor, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the first and second dim of every chunk of ``x[..., r]`` (each ``[..., r/2]``)."""
    r = x.shape[-1]
    if check_layout(layout) == "halves":
        return x[..., : r // 2], x[..., r // 2 :]
    return x[..., 0::2], x[..., 1::2]


def chunk_norms(x: torch.Tensor, layout: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """2-norm of every chunk of ``x[..., r]``, computed in ``dtype`` (float32 unless asked): ``[..., r/2]``."""
    a, b = split_pairs(x.to(dtype), layout)
    return torch.hypot(a, b)


def rotate(
    x: torch.Tensor,
    positions: torch.Tensor,
    inv_freq: torch.Tensor,
    layout: str,
    scaling: float = 1.0,
) -> torch.Tensor:
    """Apply RoPE to ``x[..., S, r]`` at integer ``positions`` (``[S]`` or broadcastable ``[B, 1, S]``).

    Chunk ``k`` of the token at position ``m`` is turned by ``m * inv_freq[k]`` radians and
    multiplied by ``scaling``. Computed in float32 (float64 if ``x`` is float64).
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    angles = positions.to(dtype)[..., None] * inv_freq.to(device=x.device, dtype=dtype)
    cos, sin = torch.cos(angles) * scaling, torch.sin(angles) * scaling
    a, b = split_pairs(x, layout)
    ra, rb = a * cos - b * sin, b * cos + a * sin
    if layout == "halves":
        return torch.cat([ra, rb], dim=-1)
    return torch.stack([ra, rb], dim=-1).flatten(-2)


_INV_FREQ = re.compile(r"^(?:(?P<prefix>.*)\.)?(?:(?P<ltype>[A-Za-z0-9_]+?)_)?inv_freq$")


def frequencies_of_table(table: torch.Tensor, name: str) -> torch.Tensor:
    """The frequencies behind a sin/cos table ``[positions, rotary_dims]`` = ``[sin(m g) | cos(m g)]``
    (GPT-J's ``embed_positions``, which it reads its angles from instead of an ``inv_freq`` buffer):
    ``g = atan2(sin(g), cos(g))`` from the row of position 1 (each ``g`` < pi), in float64; the table
    must be ``[0 | 1]`` at position 0 and match ``[sin(m g) | cos(m g)]`` at every position it holds
    (to float32 rounding), or it is refused."""
    t = table.detach().double().cpu()
    if t.dim() != 2 or t.shape[0] < 2 or t.shape[1] % 2:
        raise UnsupportedModelError(f"{name}: a {tuple(t.shape)} table is no [positions, sin | cos] RoPE table")
    half = t.shape[1] // 2
    g = _table_frequencies(table.detach().cpu(), torch.atan2(t[1, :half], t[1, half:]))
    angles = torch.arange(t.shape[0], dtype=torch.float64)[:, None] * g.double()
    expected = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    # float32 products m * g in the model's own table: off by up to m * g * 2^-24 in angle
    tolerance = 1e-6 + 2.0**-23 * angles.abs().max().item()
    if not (g > 0).all() or (t - expected).abs().max().item() > tolerance:
        raise UnsupportedModelError(f"{name} is not a table of sin and cos of positions times frequencies")
    return g


def _table_frequencies(table: torch.Tensor, estimate: torch.Tensor, ulps: int = 8) -> torch.Tensor:
    """Per column, the float32 frequency within ``ulps`` float32 steps of ``estimate`` whose table
    (``sin``/``cos`` of float32 ``position * g``, as GPT-J builds its own) is closest to ``table``:
    the model's own float32 frequency where the table was built that way, so that angles recomputed
    from it (p-RoPE at p = 1) are the model's own to the bit."""
    half = table.shape[1] // 2
    candidates = [estimate.float()]
    for direction in (math.inf, -math.inf):
        value = estimate.float()
        for _ in range(ulps):
            value = torch.nextafter(value, torch.full_like(value, direction))
            candidates.append(value)
    cand = torch.stack(candidates)  # [K, half]
    angles = torch.arange(table.shape[0], dtype=torch.float32)[:, None, None] * cand[None]  # [M, K, half]
    own = table.float()
    error = (torch.sin(angles) - own[:, None, :half]).abs().amax(0) + (
        torch.cos(angles) - own[:, None, half:]
    ).abs().amax(0)
    return cand.gather(0, error.argmin(0, keepdim=True))[0]


def read_geometry(model: torch.nn.Module, layout: str | None = None) -> RopeGeometry:
    """Read every layer's RoPE frequencies from the model's ``inv_freq`` buffers.

    ``layout`` overrides the pair layout (normally read off the family's own ``rotate_half``, else
    from the table in :mod:`ropescope.model.families`
    and then verified against the model's own rotation by :mod:`ropescope.hooks.observe`).
    Raises :class:`NoRopeError` when the model holds no ``inv_freq`` buffer.
    """
    cfg = text_config(model)
    by_type: dict[str | None, tuple[torch.Tensor, float]] = {}
    by_layer: dict[int, tuple[torch.Tensor, float]] = {}
    modules = dict(model.named_modules())
    towers = _tower_frequencies(model)
    for name, buf in model.named_buffers():
        if name in towers:
            continue
        owner = modules.get(name.rpartition(".")[0])
        if name.endswith(".embed_positions") and owner is not None and is_decoder_attention(owner):
            by_layer[int(owner.layer_idx)] = (frequencies_of_table(buf, name), 1.0)
            continue
        if not name.endswith("inv_freq") or "original_inv_freq" in name:
            continue
        match = _INV_FREQ.match(name)
        prefix, ltype = match.group("prefix") or "", match.group("ltype")
        owner = modules.get(prefix)
        scale_attr = f"{ltype}_attention_scaling" if ltype else "attention_scaling"
        scaling = float(getattr(owner, scale_attr, 1.0) or 1.0)
        buf = _recomposed(owner, buf)
        layer_match = re.search(r"layers\.(\d+)\.", name + ".")
        if layer_match and ltype is None:
            by_layer[int(layer_match.group(1))] = (buf, scaling)
        else:
            by_type[ltype] = (buf, scaling)
    if not by_type and not by_layer:
        rotary_keys = ("rotary_dim", "rope_theta", "rope_parameters", "rotary_pct", "partial_rotary_factor")
        declared = getattr(cfg, "position_embedding_type", "rope")  # Granite 4.0-H: None or "nope" (no RoPE)
        if declared in ("rope", "rotary") and any(getattr(cfg, key, None) for key in rotary_keys):
            raise UnsupportedModelError(
                f"model type {getattr(cfg, 'model_type', '?')!r} uses rotary positions but keeps no inv_freq "
                "buffer ropescope can read (unsupported architecture); supported families: "
                + ", ".join(sorted(FAMILIES))
            )
        raise NoRopeError(
            f"model type {getattr(cfg, 'model_type', '?')!r} has no rotary positional encoding "
            "(no inv_freq buffer); ropescope analyses RoPE models only"
        )
    n_layers = int(cfg.num_hidden_layers)
    refuse_per_layer_heads(cfg)
    n_heads = int(cfg.num_attention_heads)
    sites = _sites(model)
    head_dims, kv_heads, v_heads, wide_kv = _layer_head_sizes(cfg, sites, n_layers, n_heads)
    layer_types = list(getattr(cfg, "layer_types", None) or [None] * n_layers)
    kv_sources = _kv_sources(sites, layer_types)

    windows = _sliding_windows(model, n_layers)
    nope, others = _nope_and_other_layers(model, sites)
    mla = {site.layer for site in sites or () if is_mla(site.module)}
    layers = []
    for i in range(n_layers):
        ltype = layer_types[i]
        if i in others:  # a hybrid's layer without attention (convolution, Mamba): no frequencies to read
            layers.append(LayerRope(np.zeros(0), 1.0, others[i], None, None, rope=False, attention=False))
            continue
        if i in by_layer:
            buf, scaling = by_layer[i]
        elif ltype in by_type:
            buf, scaling = by_type[ltype]
        elif None in by_type:
            buf, scaling = by_type[None]
        elif i in nope and by_type:  # a NoPE layer type with no RoPE of its own (BEAM's global layers)
            buf, scaling = torch.zeros_like(next(iter(by_type.values()))[0]), 1.0
        else:
            raise UnsupportedModelError(f"no RoPE frequencies found for layer {i} (type {ltype!r})")
        inv_freq = buf.detach().double().cpu().numpy().copy()
        if not (np.isfinite(inv_freq).all() and (inv_freq >= 0).all() and np.isfinite(scaling)):
            raise UnsupportedModelError(
                f"layer {i}'s RoPE frequencies (inv_freq) are not finite and non-negative, e.g. "
                f"{inv_freq[~np.isfinite(inv_freq) | (inv_freq < 0)][:1].tolist() or [scaling]}: check rope_theta "
                f"({_theta(cfg, ltype)!r}) and the rope scaling fields of the config"
            )
        sizes = dict(
            head_dim=head_dims.get(i), kv_heads=kv_heads.get(i), kv_source=kv_sources.get(i), v_heads=v_heads.get(i)
        )
        if i in nope:  # an MLA layer without RoPE has no shared RoPE key (its keys are per head)
            layers.append(
                LayerRope(
                    np.zeros_like(inv_freq), 1.0, ltype, None, windows[i], rope=False, shared_key=i not in mla, **sizes
                )
            )
        else:
            layers.append(LayerRope(inv_freq, scaling, ltype, _theta(cfg, ltype), windows[i], **sizes))
    widest = max((lr for lr in layers if lr.attention), key=lambda lr: len(lr.inv_freq), default=layers[0])
    rotary_dim = 2 * len(widest.inv_freq)
    head_dim = max(h for h in head_dims.values()) if head_dims else _config_head_dim(cfg, n_heads)
    layers = [
        replace(lr, inv_freq=np.zeros(rotary_dim // 2)) if not lr.attention else lr for lr in layers
    ]  # a hybrid's other layers: no chunk, as wide as the rest
    layers = [_relative_sizes(lr, head_dim, wide_kv) for lr in layers]
    called, turn = _called_function_layout(model, sites, rotary_dim)
    found = called or detect_layout(model) or family_adapter(cfg.model_type).layout
    chosen = check_layout(layout) if layout else found
    return RopeGeometry(head_dim, rotary_dim, chosen, tuple(layers), turn)


def _tower_frequencies(model: torch.nn.Module) -> set[str]:
    """Names of the ``inv_freq`` buffers outside the language model of a multimodal wrapper whose
    language model has its own (a vision tower's axial RoPE, ERNIE-4.5-VL's, Qwen-VL's): never the
    decoder's frequencies, whatever order the wrapper registers its towers in."""
    decoder = language_model(model)
    if decoder is None:
        return set()
    inside = {id(buf) for name, buf in decoder.named_buffers() if name.endswith("inv_freq")}
    if not inside:
        return set()
    return {name for name, buf in model.named_buffers() if name.endswith("inv_freq") and id(buf) not in inside}


def _recomposed(rotary: torch.nn.Module | None, inv_freq: torch.Tensor) -> torch.Tensor:
    """Each pair's frequency where the rotary module stores its ``inv_freq`` permuted and puts the
    angles back in pair order in its forward (ERNIE-4.5-VL "pre-rotates" the height and width
    frequencies and recomposes them with ``recomposition_frequencies``): that function, the model's
    own, applied to the buffer with one position on every axis (text: t = h = w), one value per pair
    (ERNIE's repeats each pair's angle for the pair's two dims; Qwen-VL's keeps the text order, so
    the frequencies read are the buffer's). Other modules: the buffer itself."""
    recompose = getattr(rotary, "recomposition_frequencies", None)
    sections = getattr(rotary, "mrope_section", None)  # a text model's (a vision tower's axes are its own)
    if not callable(recompose) or not sections:
        return inv_freq
    with torch.no_grad():
        axes = len(sections)
        out = recompose(inv_freq.detach().float()[None, None, None, :].expand(axes, 1, 1, -1)).reshape(-1)
    n = inv_freq.shape[-1]
    if out.shape[0] == 2 * n and torch.equal(out[0::2], out[1::2]):  # each pair's angle on its two dims
        out = out[0::2]
    elif out.shape[0] == 2 * n and torch.equal(out[:n], out[n:]):  # the halves layout's [angles | angles]
        out = out[:n]
    if out.shape[0] != n:  # not a per-pair order: the buffer, checked by the rotation self-check as ever
        return inv_freq
    return out.to(inv_freq.dtype)


PER_LAYER_HEAD_FIELDS = ("num_attention_heads",)


def refuse_per_layer_heads(cfg) -> None:
    """Refuse, in one line, a config whose layers have different numbers of query heads (per-layer
    head sizes and KV-head counts, as in Gemma 4, are measured)."""
    varying = []
    for field in PER_LAYER_HEAD_FIELDS:
        try:
            getattr(cfg, field, None)
        except Exception as exc:  # noqa: BLE001 - transformers' AmbiguousGlobalPerLayerAttributeError
            if "per-layer" not in str(exc):
                raise
            varying.append(field)
    if varying:
        raise UnsupportedModelError(
            f"model type {getattr(cfg, 'model_type', '?')!r} sets {', '.join(varying)} per layer; ropescope "
            "measures per-layer head sizes and KV-head counts, not per-layer query-head counts"
        )


def _sites(model: torch.nn.Module):
    """The model's attention sites, or None where they cannot be hooked at all (refused later, where
    the hooks are installed)."""
    try:
        return attention_sites(model)
    except UnsupportedModelError:
        return None


def _nope_and_other_layers(model: torch.nn.Module, sites) -> tuple[set[int], dict[int, str]]:
    """Attention layers that never call RoPE (:mod:`ropescope.model.nope`), and a hybrid model's
    layers without softmax attention with their type."""
    if sites is None:
        return set(), {}
    return layers_without_rope(model, sites), other_layers(model, sites)


def _turn(value) -> int:
    if type(value) is not int or value not in (1, -1):
        raise ValueError(f"geometry turn must be 1 or -1, got {value!r}")
    return value


def _called_function_layout(model: torch.nn.Module, sites, rotary_dim: int) -> tuple[str | None, int]:
    """The pair layout of the RoPE function the layers call: implied by the order of its output where
    it reorders it (DeepSeek-style interleaved MLA: interleaved pairs in, halves out), else read off
    the function at a quarter turn (:func:`~ropescope.model.families.rotation_layout`); None where
    neither can be read."""
    if not sites:
        return None, 1
    by_name = {
        (id(site.code_module), name): (site.code_module, name, site.rope_call)
        for site in sites
        for name in site.rope_functions
    }
    called = rope_functions_called(model, sites)
    layouts = set()
    for site in sites:
        for name in called.get(site.layer, ()):
            code, _, kind = by_name[(id(site.code_module), name)]
            if kind == "complex":  # view_as_complex on [..., pairs, 2]: dims 2k and 2k+1 are one number
                layouts.add(("interleaved", 1))
                continue
            function = getattr(code, name)
            order = output_order(function, kind, rotary_dim)
            if order is not None:
                layouts.add((pair_layout_of_order(order[0]), 1))
            else:  # output in input order: which pairs it turns, and which way, read off the function
                layouts.add(quarter_turn(function, kind, rotary_dim))
    layouts.discard(None)
    if len(layouts) > 1:
        raise UnsupportedModelError("its layers call RoPE functions with different pair layouts; ropescope reads one")
    return layouts.pop() if layouts else (None, 1)


def _config_head_dim(cfg, n_heads: int) -> int:
    return int(config_value(cfg, "head_dim") or cfg.hidden_size // n_heads)


def module_kv_heads(module: torch.nn.Module, n_heads: int) -> int | None:
    """The key heads an attention module hands its RoPE call, read off the module: ``n_heads /
    num_key_value_groups``, or Falcon's ``num_kv_heads`` (1 under multi-query attention; all
    ``n_heads`` under its new decoder architecture, which broadcasts the keys to every query head
    before RoPE); None where the module says neither."""
    groups = getattr(module, "num_key_value_groups", None)
    if isinstance(groups, int) and groups > 0 and n_heads % groups == 0:
        return n_heads // groups
    count = getattr(module, "num_key_value_heads", None)  # DBRX: from its attn_config, not the top config
    if isinstance(count, int) and not isinstance(count, bool) and count > 0 and n_heads % count == 0:
        return count
    own = getattr(module, "num_kv_heads", None)
    if isinstance(own, int) and own > 0:
        return n_heads if getattr(module, "new_decoder_architecture", False) is True else own
    return None


def _layer_head_sizes(cfg, sites, n_layers: int, n_heads: int):
    """Each attention layer's head size at RoPE, key-head count and value-head count, read off its
    attention module (``head_dim``, ``num_key_value_groups`` or Falcon's ``num_kv_heads``, the key heads
    as the RoPE call sees them; MLA: ``qk_rope_head_dim``, one key,
    a value per query head), else the config's model-wide values; and the model-wide KV-head count:
    the most of the config's and any layer's (MiMo-V2-Flash's sliding layers have more than its config
    says)."""
    wide_dim = config_value(cfg, "head_dim")
    wide_kv = config_value(cfg, "num_key_value_heads")
    head_dims, kv_heads, v_heads = {}, {}, {}
    for site in sites or ():
        module = site.module
        own_dim = module.qk_rope_head_dim if is_mla(module) else getattr(module, "head_dim", None)
        head_dims[site.layer] = int(own_dim) if isinstance(own_dim, int) and own_dim > 0 else None
        kv_heads[site.layer] = module_kv_heads(module, n_heads) or int(wide_kv or n_heads)
        if is_mla(module):
            kv_heads[site.layer], v_heads[site.layer] = 1, n_heads
    if any(d is None for d in head_dims.values()) or not head_dims:
        default = int(wide_dim or cfg.hidden_size // n_heads)
        head_dims = {i: d or default for i, d in head_dims.items()}
    # the layers' own counts where the modules say them (a stray top-level num_key_value_heads that the
    # modeling code never reads, as DBRX's config may hold, adds no empty heads)
    said = [module_kv_heads(site.module, n_heads) for site in sites or ()]
    wide = widest_kv([*said, *v_heads.values()], wide_kv, every=bool(said) and all(said), also=kv_heads.values())
    return head_dims, kv_heads, v_heads, wide or n_heads


def widest_kv(counts, config_count, *, every: bool, also=()) -> int:
    """The model-wide KV-head count: the most any layer says (``counts``, ``also``), and the config's
    ``config_count`` only where not every layer says its own (``every``): a stray top-level
    ``num_key_value_heads`` that the modeling code never reads, as DBRX's config may hold, adds no
    empty heads. 0 where nothing says a count."""
    said = [int(c) for c in (*counts, *also) if c]
    return max([*said, *([] if every else [int(config_count or 0)])] or [0])


def _kv_sources(sites, layer_types: list) -> dict[int, int]:
    """Layers that reuse an earlier layer's keys and values (``is_kv_shared_layer``: Gemma 3n, Gemma
    4) mapped to that layer: the last one before it of the same layer type that stores its keys and
    values for sharing (``store_full_length_kv``), as the modeling code hands them on."""
    stores: dict = {}
    out = {}
    for site in sorted(sites or (), key=lambda s: s.layer):
        kind = layer_types[site.layer] if site.layer < len(layer_types) else None
        if getattr(site.module, "is_kv_shared_layer", False) is True:
            if kind not in stores:
                raise UnsupportedModelError(
                    f"layer {site.layer} reuses another layer's keys and values, "
                    f"but no earlier {kind} layer stores them"
                )
            out[site.layer] = stores[kind]
        elif getattr(site.module, "store_full_length_kv", False) is True:
            stores[kind] = site.layer
    return out


def _relative_sizes(lr: LayerRope, head_dim: int, kv_heads: int) -> LayerRope:
    """Keep a layer's own head size, key-head and value-head counts only where they differ from the
    widest head and the model-wide KV-head count."""
    own_dim = lr.head_dim if lr.head_dim != head_dim else None
    own_kv = lr.kv_heads if lr.kv_heads is not None and lr.kv_heads != kv_heads else None
    own_v = lr.v_heads if lr.v_heads is not None and lr.v_heads != (own_kv or kv_heads) else None
    return replace(lr, head_dim=own_dim, kv_heads=own_kv, v_heads=own_v)


def _theta(cfg, layer_type: str | None) -> float | None:
    """The configured RoPE base for labels (``rope_parameters`` or legacy ``rope_theta``)."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if layer_type is not None and isinstance(params.get(layer_type), dict):
            params = params[layer_type]
        if "rope_theta" in params:
            return float(params["rope_theta"])
    theta = getattr(cfg, "rope_theta", None)
    return float(theta) if theta is not None else None


def builds_sliding_mask(model: torch.nn.Module) -> bool:
    """Whether the modeling code of the model's decoder attention builds a sliding-window mask
    (``create_sliding_window_causal_mask`` and kin): the only way a window reaches eager attention."""
    modules = decoder_attention_modules(model)
    if not modules:
        return True  # nothing to read: keep what the config says
    source = inspect.getsource(sys.modules[type(modules[0]).__module__])
    return re.search(r"sliding\w*_mask|create_\w*sliding\w*", source) is not None


def _window_from_config(model: torch.nn.Module) -> bool:
    """Whether the attention hands its kernel the config's window itself (``sliding_window=getattr(
    self.config, "sliding_window", None)``: Mistral, MiniMax) rather than a window of its own layer
    type: then the model's masks slide on every softmax layer where the config sets a window."""
    modules = decoder_attention_modules(model)
    if not modules:
        return False
    source = forward_source(modules[0])
    return re.search(r"sliding_window\s*=\s*getattr\(\s*self\.config,\s*[\"']sliding_window", source) is not None


def _sliding_windows(model: torch.nn.Module, n_layers: int) -> list[int | None]:
    """Each layer's sliding window in tokens (``None``: global attention).

    The attention module's own ``sliding_window`` wins (Gemma 2/3); otherwise the config's
    ``layer_types`` say which layers slide; with neither, a config ``sliding_window`` applies to
    every layer (Mistral), as it does where the attention hands its kernel the config's own window
    whatever the layer type (MiniMax). A model whose modeling code builds no sliding-window mask slides
    nowhere, whatever its config holds (Moshi, Qwen3-VL-MoE keep a ``sliding_window`` they never
    use).
    """
    cfg = text_config(model)
    window = getattr(cfg, "sliding_window", None)
    window = window if isinstance(window, int) and window > 0 else None
    if not builds_sliding_mask(model):
        return [None] * n_layers
    types = getattr(cfg, "layer_types", None)
    if types and _window_from_config(model):
        types = None  # every softmax layer slides, whatever its type (MiniMax's "full_attention" layers)
    windows: list[int | None] = [
        (window if types[i] == "sliding_attention" else None) if types else window for i in range(n_layers)
    ]
    for _, module in model.named_modules():
        if "Attention" in type(module).__name__ and isinstance(getattr(module, "layer_idx", None), int):
            if hasattr(module, "sliding_window") and module.layer_idx < n_layers:
                own = module.sliding_window
                if getattr(module, "is_sliding", True) is False:
                    own = None  # EXAONE 4: every layer holds the window, only sliding layers use it
                windows[module.layer_idx] = own if isinstance(own, int) and own > 0 else None
    return windows

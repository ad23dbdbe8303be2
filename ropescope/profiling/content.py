"""What a loaded profile may contain: the checks that run after its checksum has passed.

A checksum proves the file is what some writer wrote, not that the writer was ropescope: a file
crafted or edited with a recomputed checksum could hold arrays of the wrong shape, NaN means, a
negative token count or a geometry of zero layers, and would then be plotted as if it were real.
:func:`check_content` refuses every such state with the first reason found, so a profile that
loads is one :func:`~ropescope.profiling.run.profile` could have produced.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ropescope.hooks.stats import ChunkNormStats
from ropescope.model.geometry import RopeGeometry

_HASH = re.compile(r"^[0-9a-f]{16}$")
MAX_COUNT = 2**53  # token counts are float64 arrays: exact integers up to here
_COUNTS = ("n_layers", "n_heads", "n_kv_heads", "n_chunks")
_SIZES = ("n_tokens", "n_prompts", "max_seq_len")
_TEXTS = ("model_id", "model_type", "model_fingerprint", "prompt_set")


def check_content(meta, stats: dict[str, ChunkNormStats]) -> None:
    """Raise ``ValueError`` (its message the reason) unless ``meta`` and ``stats`` are consistent.

    Metadata: a JSON object with positive integer layer/head/chunk counts, non-negative token and
    prompt counts, string names, a boolean ``include_bos``, one 16-hex-digit hash per prompt and a
    RoPE geometry (finite, non-negative frequencies; ``n_layers`` layers of ``n_chunks`` chunks).
    Statistics: q of shape ``[n_layers, n_heads, n_chunks]``, k and v ``[n_layers, n_kv_heads,
    n_chunks]``; integral non-negative token counts, q's layer-0 count equal to ``n_tokens``; where
    a layer counted tokens, finite non-negative means, non-negative squared deviations and a
    maximum at least the mean; where it counted none, zero mean and deviation.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not an object")
    for key in _COUNTS + _SIZES:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key in _COUNTS else 0):
            bound = "a positive" if key in _COUNTS else "a non-negative"
            raise ValueError(f"metadata field {key} must be {bound} integer, got {value!r}")
    if meta["n_prompts"] < 1:
        raise ValueError("metadata field n_prompts must be at least 1, got 0")
    for key in _TEXTS:
        if not isinstance(meta.get(key), str):
            raise ValueError(f"metadata field {key} must be a string, got {meta.get(key)!r:.60}")
    if not isinstance(meta.get("include_bos"), bool):
        raise ValueError(f"metadata field include_bos must be true or false, got {meta.get('include_bos')!r:.60}")
    hashes = meta.get("prompt_hashes")
    if not isinstance(hashes, list) or len(hashes) != meta["n_prompts"]:
        size = len(hashes) if isinstance(hashes, list) else type(hashes).__name__
        raise ValueError(f"it lists {size} prompt hashes for {meta['n_prompts']} prompts")
    if not all(isinstance(h, str) and _HASH.match(h) for h in hashes):
        raise ValueError("a prompt hash is not 16 hexadecimal digits")
    lost = meta.get("nonfinite_tokens", {})
    if not isinstance(lost, dict) or not all(
        tensor in ("q", "k", "v")
        and isinstance(counts, list)
        and len(counts) == meta["n_layers"]
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
        for tensor, counts in lost.items()
    ):
        raise ValueError("metadata field nonfinite_tokens must map q/k/v to one non-negative count per layer")
    context = meta.get("context_length")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 1):
        raise ValueError(f"metadata field context_length must be a positive integer or null, got {context!r:.60}")
    _check_optional_fields(meta)
    _check_geometry(meta)
    _check_stats(meta, stats)


def _check_optional_fields(meta: dict) -> None:
    """The fields a report or comparison shows but no statistic depends on, each of its one type."""
    if not isinstance(meta.get("dtype", ""), str):
        raise ValueError(f"metadata field dtype must be a string, got {meta.get('dtype')!r:.60}")
    for key in ("max_tokens", "prompts_cut"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"metadata field {key} must be a non-negative integer or null, got {value!r:.60}")
    set_hash = meta.get("prompt_set_hash", "0" * 16)
    if not (isinstance(set_hash, str) and _HASH.match(set_hash)):
        raise ValueError("metadata field prompt_set_hash is not 16 hexadecimal digits")
    versions = meta.get("versions", {})
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise ValueError("metadata field versions must map package names to version strings")
    tensors = meta.get("tensors", ["q", "k", "v"])
    if (
        not isinstance(tensors, list)
        or not tensors
        or not set(tensors) <= {"q", "k", "v"}
        or len(set(tensors)) != len(tensors)
    ):
        raise ValueError(f"metadata field tensors must list some of q, k, v once, got {tensors!r:.60}")
    weights = meta.get("weights_fingerprint", "0" * 16)
    if not (isinstance(weights, str) and _HASH.match(weights)):
        raise ValueError("metadata field weights_fingerprint is not 16 hexadecimal digits")
    if not isinstance(meta.get("weights_fingerprint_kind", ""), str):
        raise ValueError("metadata field weights_fingerprint_kind must be a string")
    if not isinstance(meta.get("config", {}), dict):
        raise ValueError("metadata field config must be a JSON object")


def _check_geometry(meta: dict) -> None:
    try:
        geometry = RopeGeometry.from_dict(meta["geometry"])
    except Exception as exc:  # noqa: BLE001 - any malformed geometry is the same refusal
        raise ValueError(f"its RoPE geometry is malformed ({type(exc).__name__}: {exc!s:.80})") from None
    if geometry.n_layers != meta["n_layers"]:
        raise ValueError(f"its geometry has {geometry.n_layers} layers, its metadata {meta['n_layers']}")
    if not 0 < geometry.rotary_dim <= geometry.head_dim or geometry.rotary_dim % 2:
        raise ValueError(f"its geometry rotates {geometry.rotary_dim} of {geometry.head_dim} head dims")
    for i, layer in enumerate(geometry.layers):
        freqs = layer.inv_freq
        own_dim = geometry.layer_head_dim(i)
        if (
            freqs.ndim != 1
            or not 0 < 2 * len(freqs) <= min(own_dim, geometry.rotary_dim)
            or own_dim > geometry.head_dim
        ):
            raise ValueError(
                f"layer {i} of its geometry has {freqs.size} frequencies for a {own_dim}-dim head "
                f"(the widest: {geometry.head_dim} dims, {geometry.rotary_dim // 2} chunks)"
            )
        if layer.kv_heads is not None and not 0 < layer.kv_heads <= meta["n_kv_heads"]:
            raise ValueError(f"layer {i} of its geometry has {layer.kv_heads} KV heads of at most {meta['n_kv_heads']}")
        if not (np.isfinite(freqs).all() and (freqs >= 0).all() and math.isfinite(layer.attention_scaling)):
            raise ValueError(f"layer {i} of its geometry has non-finite or negative frequencies")
    if geometry.n_chunks != meta["n_chunks"]:
        raise ValueError(f"its geometry has {geometry.n_chunks} chunks, its metadata {meta['n_chunks']}")


def check_position_edges(edges) -> tuple[int, ...]:
    """The bucket edges of a by-position profile: integers rising from 0, at most 32 buckets."""
    if (
        not isinstance(edges, list)
        or not 2 <= len(edges) <= 33
        or not all(isinstance(e, int) and not isinstance(e, bool) for e in edges)
        or edges[0] != 0
        or any(b <= a for a, b in zip(edges, edges[1:], strict=False))
    ):
        raise ValueError(f"metadata field position_edges must rise from 0 in integers, got {edges!r:.80}")
    return tuple(edges)


def check_position_content(meta: dict, stats: dict[str, ChunkNormStats], by_position: dict) -> None:
    """Every position bucket is itself possible statistics, and the buckets' token counts add up to
    the whole profile's in every layer."""
    for b in range(len(meta["position_edges"]) - 1):
        _check_stats(meta, {t: by_position[t].buckets[b] for t in by_position}, whole=False)
    for tensor, positions in by_position.items():
        total = sum(bucket.count.numpy() for bucket in positions.buckets)
        if not np.array_equal(total, stats[tensor].count.numpy()):
            raise ValueError(f"its {tensor} position buckets count other tokens than the whole profile")


def _check_stats(meta: dict, stats: dict[str, ChunkNormStats], whole: bool = True) -> None:
    heads = {"q": meta["n_heads"], "k": meta["n_kv_heads"], "v": meta["n_kv_heads"]}
    geometry = RopeGeometry.from_dict(meta["geometry"])
    for tensor, n_heads in heads.items():
        s = stats[tensor]
        expected = (meta["n_layers"], n_heads, meta["n_chunks"])
        if tuple(s.mean.shape) != expected:
            raise ValueError(f"its {tensor} statistics have shape {tuple(s.mean.shape)}, expected {expected}")
        absent = geometry.absent(n_heads, tensor)
        if not (np.isnan(s.mean.numpy()[absent]).all() and np.isnan(s.m2.numpy()[absent]).all()):
            raise ValueError(f"its {tensor} statistics hold values for heads or chunks its geometry does not have")
        count, nonfinite = s.count.numpy(), s.nonfinite.numpy()
        for name, values in (("count", count), ("nonfinite", nonfinite)):
            exact = np.isfinite(values).all() and (values >= 0).all() and (values <= MAX_COUNT).all()
            if not (exact and (values == np.round(values)).all()):
                raise ValueError(f"its {tensor} token {name}s are not integers in 0..2^53")
        mean, m2, peak = s.mean.numpy(), s.m2.numpy(), s.max.numpy()
        seen = (count > 0)[:, None, None] & ~absent
        unseen = (count == 0)[:, None, None] & ~absent
        if not (np.isfinite(mean[seen]).all() and np.isfinite(m2[seen]).all() and np.isfinite(peak[seen]).all()):
            raise ValueError(f"its {tensor} statistics hold NaN or infinite values in layers with tokens")
        if (mean[seen] < 0).any() or (m2[seen] < -1e-9 * (1 + np.abs(m2[seen]))).any():
            raise ValueError(f"its {tensor} statistics hold a negative mean norm or variance")
        if (peak[seen] < mean[seen] * (1 - 1e-9) - 1e-12).any():
            raise ValueError(f"its {tensor} statistics hold a maximum norm below the mean")
        if (mean[unseen] != 0).any() or (m2[unseen] != 0).any():
            raise ValueError(f"its {tensor} statistics hold values in a layer that counted no tokens")
    if whole and int(stats["q"].count[0]) != meta["n_tokens"]:
        raise ValueError(f"its layer-0 query count {int(stats['q'].count[0])} is not n_tokens {meta['n_tokens']}")

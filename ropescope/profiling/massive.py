"""Massive values: the few query and key chunks whose norm dwarfs the rest of their head.

Jin et al. (ICML 2025) call a query or key dimension *massive* when its 2-norm over the tokens of a
prompt, ``||Q[:, h, d]||``, exceeds ``lambda`` times the mean of that norm over the head's
dimensions (``lambda = 5``), and find such dimensions concentrated in the low RoPE frequencies. The
chunk version measured here, from a profile's statistics alone, is its analogue for RoPE's 2-D
pairs: per (layer, head, chunk) the root-mean-square chunk norm over the counted tokens,

    rms = sqrt(mean^2 + m2 / count)          (= sqrt(mean over tokens of ||chunk||^2))

which is ``||Q[:, h, chunk]|| / sqrt(tokens)``, so its ratio to the head's mean over chunks is the
ratio Jin et al. threshold. Only the chunks a layer has count (Gemma 4's narrower heads).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

JIN_THRESHOLD = 5.0  # Jin et al.'s lambda: a chunk is massive above 5x its head's mean


def rms_norms(stats) -> np.ndarray:
    """``[layers, heads, chunks]`` root-mean-square chunk norm over counted tokens (activation units;
    NaN where a layer has no such head or chunk, or counted no token), from a
    :class:`~ropescope.hooks.stats.ChunkNormStats`."""
    mean, m2 = stats.mean.numpy(), stats.m2.numpy()
    count = stats.count.numpy()[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(mean**2 + m2 / np.where(count > 0, count, np.nan))
    return out


def concentration(stats) -> np.ndarray:
    """``[layers, heads]``: each head's largest chunk rms over its mean chunk rms (1 = flat; Jin et
    al.'s massive values start at 5)."""
    rms = rms_norms(stats)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # heads a layer does not have: all NaN
        return np.nanmax(rms, axis=2) / np.nanmean(rms, axis=2)


def massive_table(profile, threshold: float = JIN_THRESHOLD, tensors: tuple[str, ...] = ("q", "k")) -> pd.DataFrame:
    """One row per massive chunk (rms above ``threshold`` times its head's mean chunk rms) of the
    query and key heads of ``profile``: ``tensor``, ``layer``, ``head``, ``chunk`` (0 = fastest),
    ``frequency`` (rad/token), ``wavelength`` (tokens), ``rms_norm`` (activation units), ``ratio``
    (to the head's mean), ``slow`` (the chunk turns less than one radian across the model's
    configured context, or a sliding layer's window: the low-frequency side of the maps)."""
    if not np.isfinite(threshold) or threshold <= 1:
        raise ValueError(f"threshold must be a number above 1, got {threshold!r}")
    geometry = profile.geometry
    freqs = geometry.frequency_table()
    context = profile.meta.get("context_length") or profile.meta.get("max_tokens")
    rows = []
    for tensor in tensors:
        rms = rms_norms(profile.stats[tensor])
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            ratio = rms / np.nanmean(rms, axis=2, keepdims=True)
        for layer, head, chunk in zip(*np.nonzero(ratio > threshold), strict=True):
            g = float(freqs[layer, chunk])
            boundary = geometry.semantic_boundary(int(layer), context) if context else None
            rows.append(
                {
                    "tensor": tensor,
                    "layer": int(layer),
                    "head": int(head),
                    "chunk": int(chunk),
                    "frequency": g,
                    "wavelength": 2 * np.pi / g if g > 0 else np.inf,
                    "rms_norm": float(rms[layer, head, chunk]),
                    "ratio": float(ratio[layer, head, chunk]),
                    "slow": bool(boundary is not None and chunk >= boundary),
                }
            )
    columns = ["tensor", "layer", "head", "chunk", "frequency", "wavelength", "rms_norm", "ratio", "slow"]
    return pd.DataFrame(rows, columns=columns)

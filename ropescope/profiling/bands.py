"""Frequency quarters of a profile: the chunks of a layer cut into four equal bands by frequency rank
(band 1 = the fastest quarter, band 4 = the slowest), and each band's share of the layer's norm."""

from __future__ import annotations

import numpy as np

BANDS = ("fastest 25%", "25-50%", "50-75%", "slowest 25%")


def quarters(n_chunks: int) -> list[np.ndarray]:
    """The chunk indices of each frequency quarter of ``n_chunks`` chunks (fastest first; sizes
    differ by at most one where ``n_chunks`` is not a multiple of 4)."""
    return np.array_split(np.arange(n_chunks), len(BANDS))


def head_band_shares(values: np.ndarray, geometry) -> np.ndarray:
    """``[layers, heads, 4]``: each head's share of its summed ``values[layers, heads, chunks]`` (mean
    chunk norms) in each frequency quarter of its layer's own chunks (NaN for a head its layer lacks)."""
    out = np.full((*values.shape[:2], len(BANDS)), np.nan)
    for layer in range(values.shape[0]):
        own = values[layer, :, : geometry.layer_chunks(layer)]
        out[layer] = np.stack([own[:, idx].sum(-1) for idx in quarters(own.shape[-1])], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / out.sum(axis=-1, keepdims=True)


def band_shares(profile, tensor: str) -> np.ndarray:
    """``[layers, 4]``: share of the layer's total mean chunk norm in each frequency quarter of the
    layer's own chunks (Gemma 4's sliding and global layers have different numbers)."""
    usage, geometry = profile.layer_usage(tensor), profile.geometry
    out = np.empty((usage.shape[0], len(BANDS)))
    for layer, row in enumerate(usage):
        row = row[: geometry.layer_chunks(layer)]
        out[layer] = [row[idx].sum() for idx in quarters(len(row))]
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / out.sum(axis=1, keepdims=True)

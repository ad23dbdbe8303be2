"""Frequency quarters of a profile: the chunks of a layer cut into four equal bands by frequency rank
(band 1 = the fastest quarter, band 4 = the slowest), and each band's share of the layer's norm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ropescope.options import BAND_LEVEL

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


BAND_COLUMNS = [
    "layer",
    "peak_chunk",
    "peak_frequency",
    "band_chunks",
    "fastest_frequency",
    "slowest_frequency",
    "slowest_wavelength",
    "chunks_below",
    "rotating_chunks",
]


def frequency_band(profile, tensor: str = "q", level: float = BAND_LEVEL) -> pd.DataFrame:
    """The measured high-norm *frequency band* of every rotating layer (Oka et al., ICLR 2026).

    A layer's usage is its mean chunk norm over heads and counted tokens
    (:meth:`~ropescope.profiling.result.Profile.layer_usage` of ``tensor``). Its rotating chunks
    (frequency > 0) are put in frequency order, fastest first; the band is the peak chunk (largest
    usage) and the unbroken run of chunks around it, in that order, whose usage is at least ``level``
    times the peak's (full width at half maximum by default). One row per rotating layer with a
    measured usage: ``layer``, ``peak_chunk``, ``peak_frequency`` (rad/token), ``band_chunks``
    (how many), ``fastest_frequency`` and ``slowest_frequency`` of the band (rad/token),
    ``slowest_wavelength`` (tokens per turn of its slowest chunk), ``chunks_below`` (rotating
    chunks slower than the whole band: what ``below-band`` p-RoPE stops) and ``rotating_chunks``.
    Chunk indices are the layer's own (0 = fastest in the usual layout).
    """
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    usage, geometry = profile.layer_usage(tensor), profile.geometry
    rows = []
    for layer in geometry.rotating_layers:
        g = np.asarray(geometry.frequencies(layer), dtype=np.float64)
        row = usage[layer, : len(g)]
        rotating = np.nonzero((g > 0) & np.isfinite(row))[0]
        if not len(rotating):
            continue
        order = rotating[np.argsort(-g[rotating], kind="stable")]  # fastest first
        values = row[order]
        top = int(np.argmax(values))
        lo = hi = top
        while lo > 0 and values[lo - 1] >= level * values[top]:
            lo -= 1
        while hi < len(order) - 1 and values[hi + 1] >= level * values[top]:
            hi += 1
        band = order[lo : hi + 1]
        slowest = g[band].min()
        rows.append(
            {
                "layer": layer,
                "peak_chunk": int(order[top]),
                "peak_frequency": float(g[order[top]]),
                "band_chunks": len(band),
                "fastest_frequency": float(g[band].max()),
                "slowest_frequency": float(slowest),
                "slowest_wavelength": float(2 * np.pi / slowest),
                "chunks_below": int((g[rotating] < slowest).sum()),
                "rotating_chunks": len(rotating),
            }
        )
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def band_cells(profile, tensor: str = "q", level: float = BAND_LEVEL) -> list[tuple[int, int]]:
    """``(layer, chunk)`` of every chunk in each layer's measured frequency band of ``tensor``
    (the chunks whose frequency lies between the band's fastest and slowest, :func:`frequency_band`)."""
    cells = []
    for row in frequency_band(profile, tensor, level).itertuples():
        g = profile.geometry.frequencies(row.layer)
        chunks = np.nonzero((g >= row.slowest_frequency) & (g <= row.fastest_frequency))[0]
        cells += [(int(row.layer), int(c)) for c in chunks]
    return cells

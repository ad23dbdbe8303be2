"""Frequency quarters of a profile: the chunks of a layer cut into four equal bands by frequency rank
(band 1 = the fastest quarter, band 4 = the slowest), and each band's share of the layer's norm."""

from __future__ import annotations

import numpy as np

BANDS = ("fastest 25%", "25-50%", "50-75%", "slowest 25%")


def band_shares(profile, tensor: str) -> np.ndarray:
    """``[layers, 4]``: share of the layer's total mean chunk norm in each frequency quarter."""
    usage = profile.layer_usage(tensor)
    bands = np.array_split(np.arange(usage.shape[1]), len(BANDS))
    sums = np.stack([usage[:, idx].sum(axis=1) for idx in bands], axis=1)
    return sums / sums.sum(axis=1, keepdims=True)

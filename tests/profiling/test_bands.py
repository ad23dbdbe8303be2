"""Frequency quarters: per-head shares use each layer's own chunks (Gemma 4's smaller sliding heads)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ropescope.profiling.bands import head_band_shares, quarters


def test_head_band_shares_use_each_layers_own_chunks():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.1, 2.0, size=(2, 3, 10))
    values[0, :, 6:] = np.nan  # layer 0 has 6 chunks, layer 1 all 10
    geometry = SimpleNamespace(layer_chunks=lambda layer: (6, 10)[layer])
    shares = head_band_shares(values, geometry)
    for layer, chunks in enumerate((6, 10)):
        for head in range(3):
            own = values[layer, head, :chunks]
            expected = [own[idx].sum() / own.sum() for idx in quarters(chunks)]  # slow, obviously right
            np.testing.assert_allclose(shares[layer, head], expected, rtol=1e-12)
    assert np.isfinite(shares).all() and np.allclose(shares.sum(-1), 1)

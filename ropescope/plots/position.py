"""Frequency usage by token position (``profile --by-position``): which chunks carry the norm at
each distance from the start of the text."""

from __future__ import annotations

import numpy as np

from ropescope.hooks.position import bucket_labels
from ropescope.plots.style import axes_for, draw_map
from ropescope.profiling.bands import BANDS, quarters
from ropescope.profiling.result import TENSOR_PLURALS

BAND_COLOURS = ("#d62828", "#f77f00", "#2a9d8f", "#1d3557")


def _shares(usage: np.ndarray) -> np.ndarray:
    """``usage[buckets, chunks]`` as each bucket's share of its total norm per chunk."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return usage / np.nansum(usage, axis=1, keepdims=True)


def position_usage_figure(profile, tensors=("q", "k"), layer: int | None = None, *, ax=None, cmap=None, scale="p99"):
    """Per tensor: a map of each chunk's share of the norm in every position bucket (buckets with
    tokens only), and the four frequency quarters' shares against position."""
    geometry = profile.geometry
    if layer is None and len({geometry.layer_chunks(i) for i in geometry.attention_layers}) > 1:
        own_keys = [i for i in geometry.attention_layers if geometry.layers[i].kv_source is None]
        layer = max(own_keys, key=geometry.layer_chunks)  # quarters need one chunk count: the widest layer
    counts = profile.position_counts()
    seen = np.flatnonzero(counts > 0)
    labels = [bucket_labels(profile.position_edges)[i] for i in seen]
    fig, axes = axes_for(ax, 2 * len(tensors), (6.0 * len(tensors) + 4, 5.2))
    where = "all layers" if layer is None else f"layer {layer}"
    for i, tensor in enumerate(tensors):
        shares = _shares(profile.position_usage(tensor, layer)[seen])
        image_ax, line_ax = axes[2 * i], axes[2 * i + 1]
        title = f"{TENSOR_PLURALS[tensor]}: chunk share of norm by position"
        draw_map(
            fig,
            image_ax,
            shares.T,
            "token position (bucket)",
            title,
            cmap=cmap,
            scale=scale,
            label="share of the bucket's norm",
        )
        image_ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        bands = quarters(shares.shape[1])
        for band, idx, colour in zip(BANDS, bands, BAND_COLOURS, strict=True):
            line_ax.plot(range(len(labels)), shares[:, idx].sum(axis=1), marker="o", color=colour, label=band)
        line_ax.axhline(0.25, color="grey", linestyle=":", linewidth=1)
        line_ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        line_ax.set(xlabel="token position (bucket)", ylabel="share of the norm (0-1)", ylim=(0, None))
        line_ax.set_title(f"{TENSOR_PLURALS[tensor]}: frequency quarters by position", fontsize=10)
        line_ax.legend(fontsize=7, title="chunks", title_fontsize=7)
    if ax is None:
        m = profile.meta
        tokens = ", ".join(f"{lab}: {int(counts[j]):,}" for lab, j in zip(labels, seen, strict=True))
        fig.suptitle(
            f"{m['model_id']}: RoPE frequency usage by token position ({where}, mean over heads)\n"
            f"{m['prompt_set']}, tokens per bucket {tokens}",
            fontsize=10,
        )
        fig.tight_layout()
    return fig

"""F19: query frequency usage per layer for several prompt domains, side by side, and how similar
they are (Spearman rank correlation of the per-(layer, chunk) usage)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ropescope.plots.style import CMAP, colour_scale


def domains_figure(usage: dict[str, np.ndarray], similarity: pd.DataFrame, model_id: str, *, cmap=None, norm=None):
    """Per-domain query usage maps (one shared colour scale, 99th-percentile clip by default) on a
    grid of three columns, and the domains' rank-correlation matrix with its values written in."""
    names = list(usage)
    rows = int(np.ceil((len(names) + 1) / 3))
    fig, grid = plt.subplots(rows, 3, figsize=(13.5, 4.6 * rows), squeeze=False)
    axes = list(grid.ravel())
    stacked = np.stack([usage[name] for name in names])
    if norm is None:
        norm, said, extend = colour_scale(stacked)
    else:
        said, extend = type(norm).__name__, "neither"
    for ax, name in zip(axes, names, strict=False):
        image = ax.imshow(usage[name].T, aspect="auto", cmap=cmap or CMAP, norm=norm, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("layer (0-based)")
        ax.set_ylabel("chunk (0 = highest frequency)")
        fig.colorbar(image, ax=ax, fraction=0.06, pad=0.02, extend=extend).set_label(
            f"mean query chunk norm\n(shared scale, {said})", fontsize=7
        )
    ax = axes[len(names)]
    values = similarity.values
    sim = ax.imshow(values, cmap="viridis", vmin=min(0.0, float(values.min())), vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "black" if values[i, j] > 0.6 else "white"
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=10, color=colour)
    ax.set_title("Spearman rank correlation of usage", fontsize=11)
    fig.colorbar(sim, ax=ax, fraction=0.06, pad=0.02).set_label("rank correlation (-1 to 1)")
    for extra in axes[len(names) + 1 :]:
        extra.set_visible(False)
    fig.suptitle(f"{model_id}: query frequency usage across domains (F19)", fontsize=13)
    fig.tight_layout()
    return fig

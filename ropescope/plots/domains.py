"""F19: query frequency usage per layer for several prompt domains, side by side, and how similar
they are (Spearman rank correlation of the per-(layer, chunk) usage)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ropescope.plots.style import CMAP


def domains_figure(usage: dict[str, np.ndarray], similarity: pd.DataFrame, model_id: str):
    names = list(usage)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 4.6))
    vmax = max(float(u.max()) for u in usage.values())
    for ax, name in zip(axes, names, strict=False):
        image = ax.imshow(usage[name].T, aspect="auto", cmap=CMAP, vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("layer (0-based)")
    axes[0].set_ylabel("chunk (0 = highest frequency)")
    fig.colorbar(image, ax=axes[len(names) - 1], fraction=0.08).set_label("mean query chunk norm (shared scale)")
    ax = axes[-1]
    sim = ax.imshow(similarity.values, cmap="viridis", vmin=min(0.0, float(similarity.values.min())), vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{similarity.values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_title("Spearman rank correlation", fontsize=10)
    fig.colorbar(sim, ax=ax, fraction=0.05).set_label("rank correlation of usage")
    fig.suptitle(f"{model_id}: query frequency usage across domains (F19)")
    fig.tight_layout()
    return fig

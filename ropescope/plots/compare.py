"""The comparison of two profiles (``ropescope compare``): per tensor, the difference map (b - a),
the ratio map (log2 of b / a) and the per-layer rank correlation."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from ropescope.plots.style import draw_map
from ropescope.profiling.result import TENSOR_PLURALS


def comparison_figure(comparison, tensors: tuple[str, ...] | None = None):
    """One row per tensor both profiles measured (or ``tensors``): difference map, log2 ratio map
    (both diverging around no change, colour range at the 99th percentile of the absolute values)
    and Spearman per layer."""
    tensors = tuple(comparison.maps) if tensors is None else tensors
    fig, axes = plt.subplots(len(tensors), 3, figsize=(16, 4.3 * len(tensors)), squeeze=False)
    for row, tensor in zip(axes, tensors, strict=True):
        name = TENSOR_PLURALS[tensor]
        difference = comparison.grid(tensor, "difference").T
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log2(comparison.grid(tensor, "ratio")).T
        for ax, data, what, label in (
            (row[0], difference, f"{name}: b - a", "difference of mean chunk norm (b - a)"),
            (row[1], log_ratio, f"{name}: log2(b / a)", "log2 ratio (1 = twice as large in b)"),
        ):
            finite = np.abs(data[np.isfinite(data)])
            limit = float(np.percentile(finite, 99)) if finite.size else 1.0
            norm = matplotlib.colors.Normalize(-(limit or 1.0), limit or 1.0)
            xlabel = "relative depth (bin)" if comparison.by == "relative" else "layer (0-based)"
            draw_map(fig, ax, data, xlabel, what, cmap="RdBu_r", norm=norm, label=f"{label}\nrange +-99th pct")
            if comparison.by == "relative":
                ax.set_ylabel("relative chunk position (bin, 0 = fastest)")
        part = comparison.correlations[comparison.correlations.tensor == tensor]
        row[2].plot(part.layer, part.spearman, marker="o", color="#1d3557")
        row[2].axhline(
            comparison.overall[tensor],
            color="#d62828",
            linestyle="--",
            label=f"over all cells: {comparison.overall[tensor]:.3f}",
        )
        row[2].set(
            ylim=(-1.05, 1.05),
            xlabel="layer (0-based)" if comparison.by != "relative" else "depth bin",
            ylabel="Spearman rank correlation of chunk usage",
        )
        row[2].set_title(f"{name}: do a and b rank the chunks alike?", fontsize=10)
        row[2].legend(fontsize=8, loc="lower left")
        row[2].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(f"a = {comparison.a_name}\nb = {comparison.b_name}  (aligned by {comparison.by})", fontsize=11)
    fig.tight_layout()
    return fig

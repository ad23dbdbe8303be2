"""Training dynamics (``train-prope --profile-every N``): when the low-frequency bands and the
positional heads appear, per encoding, seeds as a band (min to max) around their mean."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

PANELS = (
    ("k_slowest", "q_slowest", "share of norm in the slowest quarter (keys solid, queries dashed)", 0.25),
    ("previous_token", None, "strongest previous-token score (max over heads)", 0.5),
    ("diagonal", None, "strongest diagonal score (max over heads)", 0.5),
)


def training_figure(
    table: pd.DataFrame,
    title: str = "",
    xlabel: str = "training step",
    tick_labels: list[str] | None = None,
    legend_title: str | None = None,
):
    """Three panels against training step (``table``: columns encoding, seed, step and the
    snapshot numbers); a horizontal line marks no preference (0.25) or the positional threshold (0.5).
    ``tick_labels`` names the steps 0, 1, ... (revisions without a step number); ``legend_title``
    replaces the encoding-and-seeds title of ``train-prope``."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colours = plt.get_cmap("tab10")
    encodings = list(dict.fromkeys(table.encoding))
    for ax, (column, second, label, reference) in zip(axes, PANELS, strict=True):
        for i, encoding in enumerate(encodings):
            part = table[table.encoding == encoding]
            for col, style in ((column, "-"), (second, "--")):
                if col is None:
                    continue
                stats = part.groupby("step")[col].agg(["mean", "min", "max"])
                ax.plot(
                    stats.index,
                    stats["mean"],
                    style,
                    color=colours(i),
                    marker="o",
                    markersize=3,
                    label=encoding if style == "-" else None,
                )
                ax.fill_between(stats.index, stats["min"], stats["max"], color=colours(i), alpha=0.15, linewidth=0)
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        if tick_labels is not None:
            ax.set_xticks(range(len(tick_labels)), tick_labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.set_ylim(0, 1.02 if column != "k_slowest" else None)
    seeds = table.seed.nunique()
    legend_title = legend_title or f"encoding ({seeds} seed{'s' if seeds > 1 else ''}: mean, band = min-max)"
    axes[0].legend(fontsize=7, title=legend_title, title_fontsize=7)
    fig.suptitle(title or "How frequency usage and positional heads appear during training", fontsize=11)
    fig.tight_layout()
    return fig

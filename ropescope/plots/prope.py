"""Figures of p-RoPE: perplexity against p at inference (pretrained model) and the T2-style bars of
models trained from scratch."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

VARIANT_STYLE = {
    "p": ("#d62828", "o", "p-RoPE (drop slowest)"),
    "reversed": ("#1d3557", "s", "reversed (drop fastest)"),
    "partial": ("#2a9d8f", "^", "partial rotary"),
}


def prope_figure(table: pd.DataFrame, model_id: str, text_name: str, context: int):
    """Perplexity of each variant against p (log scale), with the unmodified model as a line.
    Settings whose perplexity is not finite (overflowing logits) are left out and named in the title."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    reference = table.loc[table.variant == "rope", "perplexity"].item()
    lost = table[~np.isfinite(table.perplexity.astype(float))]
    table = table[np.isfinite(table.perplexity.astype(float))]
    for variant, (colour, marker, label) in VARIANT_STYLE.items():
        part = table[table.variant == variant].sort_values("p")
        if len(part):
            xs = list(part.p) + [1.0]
            ys = list(part.perplexity) + [reference]
            ax.plot(xs, ys, marker=marker, color=colour, label=label)
    ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=f"RoPE (unmodified): {reference:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("p (fraction of RoPE chunks that keep rotating)")
    ax.set_ylabel("perplexity (per token, log scale)")
    missing = ""
    if len(lost):
        missing = "\nnot drawn (non-finite perplexity): " + ", ".join(
            f"{r.variant} p={r.p:g}" for r in lost.itertuples()
        )
    ax.set_title(
        f"{model_id}: p-RoPE at inference, no fine-tuning\n{text_name}, windows of {context} tokens{missing}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def t2_figure(summary: pd.DataFrame, title: str):
    """T2: mean validation perplexity per encoding with one standard deviation over seeds (no error
    bar where a single seed leaves the standard deviation undefined)."""
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    order = summary.sort_values("mean")
    spread = order["std"].fillna(0.0)
    colours = ["#d62828" if "0.75-RoPE" == name else "#457b9d" for name in order.encoding]
    ax.bar(order.encoding, order["mean"], yerr=spread, color=colours, capsize=4)
    low = (order["mean"] - spread).min()
    high = (order["mean"] + spread).max()
    ax.set_ylim(low - 0.1 * (high - low) - 1e-3, high + 0.1 * (high - low) + 1e-3)
    ax.set_ylabel("validation perplexity (per byte)")
    ax.set_xlabel("positional encoding")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=25)
    fig.tight_layout()
    return fig

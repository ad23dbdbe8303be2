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
    "below-band": ("#8338ec", "*", "below the measured band (no rotation)"),
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


SETTING_STYLE = {  # context-extension settings: colour, line style
    "trained": ("#2a9d8f", "-"),
    "none": ("#6c757d", "--"),
    "linear": ("#1d3557", "-"),
    "yarn": ("#d62828", "-"),
    "llama3": ("#f77f00", "-"),
}


def context_extension_figure(table: pd.DataFrame, curves: pd.DataFrame, model_id: str, text_name: str):
    """Left: the mean loss (nats/token) by window position for every setting of
    :func:`~ropescope.prope.context_extension.context_extension`, the trained length marked; right:
    each setting's perplexity over the same tokens, with its ratio to the trained-length windows."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.6), gridspec_kw={"width_ratios": [1.7, 1]})
    trained = int(table.loc[table.setting == "trained", "context"].item())
    bucket = int(curves.start.iloc[1] - curves.start.iloc[0]) if len(curves) > 1 else trained
    centres = (curves.start + bucket / 2) / 1000
    labels = {"trained": f"unscaled, windows of {trained:,}", "none": "unscaled (extrapolating)"}
    for name in table.setting:
        colour, style = SETTING_STYLE.get(name.split(":")[0], ("#555555", "-"))
        left.plot(
            centres,
            curves[name],
            color=colour,
            linestyle=style,
            marker="o",
            markersize=3.5,
            label=labels.get(name, f"{name} (at inference)"),
        )
    left.axvline(trained / 1000, color="black", linewidth=1, linestyle=":")
    left.annotate(
        f"trained length {trained:,}",
        (trained / 1000, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
    )
    left.set_xlabel(f"position in the window (thousand tokens; bins of {bucket:,})")
    left.set_ylabel("mean loss (nats per token)")
    left.set_title("loss by position", fontsize=10)
    left.legend(fontsize=8)
    finite = np.isfinite(table.perplexity.astype(float))
    colours = [SETTING_STYLE.get(name.split(":")[0], ("#555555", "-"))[0] for name in table.setting]
    bars = right.bar(range(len(table)), np.where(finite, table.perplexity, np.nan), color=colours)
    for bar, row in zip(bars, table.itertuples(), strict=True):
        if np.isfinite(row.perplexity):
            right.annotate(
                f"{row.perplexity:.2f}\n(x{row.ratio:.2f})",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7.5,
            )
    right.set_xticks(
        range(len(table)), [f"{s}\n{c:,}" for s, c in zip(table.setting, table.context, strict=True)], fontsize=8
    )
    right.set_yscale("log")
    right.set_ylabel("perplexity over the same tokens (log scale)")
    right.set_xlabel("setting, tokens per window")
    right.set_title("perplexity (x: ratio to the trained windows)", fontsize=10)
    right.margins(y=0.25)
    extended = int(table.context.max())
    fig.suptitle(
        f"{model_id}: context extension at inference, no fine-tuning: {text_name}, "
        f"{int(table.windows.iloc[-1])} window(s) of {extended:,} tokens ({extended / trained:g}x the trained length)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig

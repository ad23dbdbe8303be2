"""Figures of heads: per-prompt views of one head (F5/F7 attention, F12 logits, F6/F14-F16 chunk
norms), the positional-vs-high-frequency scatter of all heads, and the causal test."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ropescope.heads.views import HeadView
from ropescope.plots.style import CMAP

CLASS_COLOURS = {
    "diagonal": "#d62828",
    "previous-token": "#f77f00",
    "positional-other": "#fcbf49",
    "bos-sink": "#457b9d",
    "semantic/mixed": "#8d99ae",
}


def _token_axes(ax, tokens: list[str], rows: bool = True) -> None:
    labels = [repr(t)[1:-1][:10] for t in tokens]
    if len(tokens) <= 48:
        ax.set_xticks(range(len(tokens)), labels, rotation=90, fontsize=6)
        if rows:
            ax.set_yticks(range(len(tokens)), labels, fontsize=6)


def _title(view: HeadView, what: str, model_id: str) -> str:
    return f"{model_id}: {what}, layer {view.layer} head {view.head} (0-based)"


def attention_figure(view: HeadView, model_id: str):
    """F5/F7: the head's attention probabilities on one prompt."""
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    image = ax.imshow(view.attention, cmap=CMAP, vmin=0, vmax=1, interpolation="nearest")
    _token_axes(ax, view.tokens)
    ax.set_xlabel("key token (position, 0-based)")
    ax.set_ylabel("query token (position, 0-based)")
    ax.set_title(_title(view, "attention", model_id), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label("attention probability")
    fig.tight_layout()
    return fig


def logits_figure(view: HeadView, model_id: str):
    """F12: the head's logits (scaled q.k, after any soft-capping); masked entries grey."""
    fig, ax = plt.subplots(figsize=(7.2, 6.4))
    limit = float(np.nanmax(np.abs(view.logits))) or 1.0
    cmap = matplotlib.colormaps["RdBu_r"].copy()
    cmap.set_bad("#e0e0e0")
    image = ax.imshow(view.logits, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    _token_axes(ax, view.tokens)
    ax.set_xlabel("key token (position, 0-based)")
    ax.set_ylabel("query token (position, 0-based)")
    ax.set_title(_title(view, "attention logits", model_id), fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label(f"logit (q.k x {view.scaling:.4g})")
    fig.tight_layout()
    return fig


def chunk_norms_figure(view: HeadView, model_id: str):
    """F6/F14-F16: per-token chunk norms of the head's queries and keys."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    for ax, data, name in ((axes[0], view.q_chunk_norms, "queries"), (axes[1], view.k_chunk_norms, "keys")):
        image = ax.imshow(data.T, aspect="auto", cmap=CMAP, interpolation="nearest")
        _token_axes(ax, view.tokens, rows=False)
        ax.set_xlabel("token (position, 0-based)")
        ax.set_ylabel("chunk (0 = highest frequency)")
        ax.set_title(name, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).set_label("chunk norm (2-norm)")
    fig.suptitle(_title(view, "per-token chunk norms", model_id))
    fig.tight_layout()
    return fig


def heads_scatter_figure(table: pd.DataFrame, model_id: str, hf_fraction: float, agreement: dict):
    """Every head: largest offset score against high-frequency usage, coloured by class."""
    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    for cls, colour in CLASS_COLOURS.items():
        part = table[table["class"].astype(str) == cls]
        if len(part):
            ax.scatter(
                part["hf_score"],
                part["positional_score"],
                s=28,
                c=colour,
                label=f"{cls} ({len(part)})",
                edgecolors="black",
                linewidths=0.4,
            )
    for row in table[table["class"].astype(str).isin(["diagonal", "previous-token", "positional-other"])].itertuples():
        ax.annotate(
            f"L{row.layer}H{row.head}",
            (row.hf_score, row.positional_score),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.set_xlabel(f"high-frequency usage (share of q-k chunk-norm product in fastest {hf_fraction:.1%} of chunks)")
    ax.set_ylabel("largest mean attention on one offset")
    ax.set_title(
        f"{model_id}: positional heads vs high-frequency use\n"
        f"Spearman {agreement['spearman']:.2f}; heads 0-based (L=layer, H=head)",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def causal_figure(table: pd.DataFrame, model_id: str):
    """Causal test: a head's offset score with no chunk, the fastest, the slowest, random chunks zeroed."""
    heads = table.groupby(["layer", "head", "offset"], sort=False)
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(heads), 4.6))
    width = 0.2
    for g, (_, part) in enumerate(heads):
        random = part[part.condition.str.startswith("random")]["score"]
        values = [
            part.loc[part.condition == "none", "score"].item(),
            part.loc[part.condition == "fastest", "score"].item(),
            part.loc[part.condition == "slowest", "score"].item(),
            random.mean() if len(random) else np.nan,
        ]
        errors = [None, None, None, random.std(ddof=1) if len(random) > 1 else None]
        colours = ["#6c757d", "#d62828", "#1d3557", "#a8dadc"]
        labels = ["none", "fastest zeroed", "slowest zeroed", "random zeroed (mean, sd)"]
        for c in range(4):
            ax.bar(
                g + (c - 1.5) * width,
                values[c],
                width,
                yerr=errors[c],
                color=colours[c],
                label=labels[c] if g == 0 else None,
                capsize=3,
            )
    ax.set_xticks(range(len(heads)), [f"L{lay}H{hd}\noffset {off}" for (lay, hd, off) in heads.groups])
    ax.set_ylabel("mean attention on the head's offset")
    n = len(table.iloc[1]["chunks"].split()) if len(table) > 1 else 0
    ax.set_title(f"{model_id}: zeroing {n} query chunks of positional heads (0-based)", fontsize=10)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

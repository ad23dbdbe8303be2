"""Figures of heads: per-prompt views of one head (F5/F7 attention, F12 logits, F6/F14-F16 chunk
norms), the positional-vs-high-frequency scatter of all heads, and the causal test."""

from __future__ import annotations

import matplotlib
import matplotlib.colors
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ropescope.heads.defaults import THRESHOLD
from ropescope.heads.views import HeadView
from ropescope.plots.style import (
    CLASS_COLOURS,
    TRIGGER_COLOUR,
    axes_for,
    draw_map,
    masked_cmap,
    set_token_ticks,
    token_labels,
)


def _title(view: HeadView, what: str, model_id: str) -> str:
    return f"{model_id}: {what}, layer {view.layer} head {view.head} (0-based)"


def trigger_positions(view: HeadView, trigger: str | None) -> set[int]:
    """Positions (0-based) whose token is the trigger token (exact match, or equal after stripping spaces)."""
    if not trigger:
        return set()
    return {i for i, t in enumerate(view.tokens) if t == trigger or (t.strip() and t.strip() == trigger.strip())}


def _mark_trigger_columns(ax, view: HeadView, marked: set[int]) -> None:
    """Outline the cells where a query attends to the trigger right before it (row i, column i-1)."""
    for j in sorted(marked):
        if j + 1 < len(view.tokens):
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (j - 0.5, j + 0.5), 1, 1, fill=False, edgecolor=TRIGGER_COLOUR, linewidth=1.6
                )
            )


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.masked_array(values, mask=mask)


def _square_map(view, values, mask, ax, cmap, norm, model_id, what, bar_label, trigger):
    created = ax is None
    fig, (ax,) = axes_for(ax, 1, (7.4, 6.6))
    colours = masked_cmap(cmap)
    image = ax.imshow(_masked(values, mask), cmap=colours, norm=norm, interpolation="nearest")
    marked = trigger_positions(view, trigger)
    set_token_ticks(ax, view.tokens, marked=marked)
    _mark_trigger_columns(ax, view, marked)
    ax.set_xlabel("key token (left to right: position 0, 1, ...)")
    ax.set_ylabel("query token (top to bottom: position 0, 1, ...)")
    extra = f"\ntrigger token {trigger!r} in blue; boxes: attention from the next token to it" if marked else ""
    ax.set_title(_title(view, what, model_id) + extra + "\ngrey: masked (future key or outside the window)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label(bar_label)
    if created:
        fig.tight_layout()
    return fig


def attention_figure(view: HeadView, model_id: str, *, ax=None, cmap=None, norm=None, trigger: str | None = None):
    """F5/F7: the head's attention probabilities on one prompt; masked entries grey, the trigger
    token (F7) named in the title and marked in blue."""
    norm = norm or matplotlib.colors.Normalize(0, 1)
    mask = np.isnan(view.logits)
    return _square_map(
        view, view.attention, mask, ax, cmap, norm, model_id, "attention", "attention probability (0-1)", trigger
    )


def logits_figure(view: HeadView, model_id: str, *, ax=None, cmap=None, norm=None, trigger: str | None = None):
    """F12: the head's logits (scaled q.k, after any soft-capping), diverging around 0; masked grey."""
    limit = float(np.nanmax(np.abs(view.logits))) or 1.0
    norm = norm or matplotlib.colors.Normalize(-limit, limit)
    label = f"logit (q.k x {view.scaling:.4g}, dimensionless)"
    mask = np.isnan(view.logits)
    values = np.nan_to_num(view.logits)
    return _square_map(view, values, mask, ax, cmap or "RdBu_r", norm, model_id, "attention logits", label, trigger)


def _chunk_panel(fig, ax, view, data, name, cmap, norm, scale, marked):
    draw_map(fig, ax, data.T, "token", name, cmap=cmap, norm=norm, scale=scale, label="chunk norm (2-norm)")
    set_token_ticks(ax, view.tokens, rows=False, marked=marked)


def chunk_norms_figure(
    view: HeadView,
    model_id: str,
    *,
    ax=None,
    cmap=None,
    norm=None,
    scale: str = "p99",
    trigger: str | None = None,
):
    """F6/F17/F18: per-token chunk norms of the head's queries and keys (two panels)."""
    fig, axes = axes_for(ax, 2, (12, 5.4))
    marked = trigger_positions(view, trigger)
    for axis, data, name in ((axes[0], view.q_chunk_norms, "queries"), (axes[1], view.k_chunk_norms, "keys")):
        _chunk_panel(fig, axis, view, data, name, cmap, norm, scale, marked)
    if ax is None:
        extra = f"; trigger token {trigger!r} in blue" if marked else ""
        fig.suptitle(_title(view, "per-token chunk norms", model_id) + extra)
        fig.tight_layout()
    return fig


def positional_head_figure(view: HeadView, model_id: str, cls: str, score: float, threshold: float, *, scale="p99"):
    """F14-F16: one positional head as the paper shows it: query chunk norms, key chunk norms and
    attention, side by side, with the class, its score and the threshold that found it in the title."""
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.0), gridspec_kw={"width_ratios": [1.25, 1.25, 1]})
    _chunk_panel(fig, axes[0], view, view.q_chunk_norms, "queries: chunk norms", None, None, scale, set())
    _chunk_panel(fig, axes[1], view, view.k_chunk_norms, "keys: chunk norms", None, None, scale, set())
    colours = masked_cmap()
    image = axes[2].imshow(_masked(view.attention, np.isnan(view.logits)), cmap=colours, vmin=0, vmax=1)
    set_token_ticks(axes[2], view.tokens)
    axes[2].set(xlabel="key token", ylabel="query token")
    axes[2].set_title("attention (grey: masked)", fontsize=10)
    fig.colorbar(image, ax=axes[2], fraction=0.046, pad=0.03).set_label("attention probability (0-1)")
    fig.suptitle(
        f"{model_id}: {cls} head, layer {view.layer} head {view.head} (0-based): mean attention on its offset "
        f"{score:.2f} >= threshold {threshold:g}"
    )
    fig.tight_layout()
    return fig


def cauchy_schwarz_figure(table: pd.DataFrame, view: HeadView, model_id: str, cls: str):
    """T3: per query token, the actual logit against its Cauchy-Schwarz bound scaling*|q||k| for the
    diagonal (j = i) and previous-token (j = i - 1) keys, as the fraction of the bound reached."""
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    x = np.arange(len(table))
    for offset, (name, colour) in enumerate((("diagonal", "#d62828"), ("previous", "#f77f00"))):
        ax.bar(x + (offset - 0.5) * 0.4, table[f"fraction_{name}"], 0.4, color=colour, label=f"key {name}")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, [f"{i}: {t}" for i, t in zip(table.token, token_labels(list(table.text)), strict=True)])
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.set_xlabel("query token (position: text)")
    ax.set_ylabel("logit / (scaling x |q| x |k|)  (<= 1)")
    ax.set_title(
        f"{model_id}: T3 Cauchy-Schwarz, {cls} head L{view.layer}H{view.head} (0-based):\n"
        "how much of the largest possible logit each key reaches (pre-soft-cap)",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heads_scatter_figure(
    table: pd.DataFrame, model_id: str, hf_fraction: float, agreement: dict, threshold: float = THRESHOLD, *, ax=None
):
    """Every head: largest offset score against high-frequency usage, coloured by class, with the
    classification threshold drawn; positional heads labelled ``L<layer>H<head>`` (0-based)."""
    created = ax is None
    fig, (ax,) = axes_for(ax, 1, (7.6, 5.6))
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
                zorder=3,
            )
    ax.axhline(threshold, color="#444444", linestyle=":", linewidth=1.2, label=f"threshold {threshold:g}", zorder=2)
    xs = table["hf_score"].to_numpy(dtype=float)
    span = float(np.nanmax(xs) - np.nanmin(xs)) if len(xs) else 1.0
    ax.set_xlim(float(np.nanmin(xs)) - 0.05 * span, float(np.nanmax(xs)) + 0.18 * span)
    ax.set_ylim(0, 1.05)
    for row in table[table["class"].astype(str).isin(["diagonal", "previous-token", "positional-other"])].itertuples():
        ax.annotate(
            f"L{row.layer}H{row.head}",
            (row.hf_score, row.positional_score),
            fontsize=8,
            xytext=(4, 3),
            textcoords="offset points",
            annotation_clip=False,
        )
    ax.set_xlabel(f"high-frequency usage (share of q-k chunk-norm product in fastest {hf_fraction:.1%} of chunks)")
    ax.set_ylabel("largest mean attention on one offset (0-1)")
    ax.set_title(
        f"{model_id}: positional heads vs high-frequency use\n"
        f"Spearman {agreement['spearman']:.2f}; heads 0-based (L=layer, H=head)",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if created:
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

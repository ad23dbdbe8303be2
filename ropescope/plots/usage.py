"""Figures of frequency usage (the paper's Figures 3, 4 and 13), in one consistent style.

Every map puts chunk 0 (the highest frequency) at the top, colours the mean chunk 2-norm with a
light-to-dark sequential map, and, for q and k, marks the *semantic boundary*: below the solid line
a chunk turns less than one radian across the longest profiled prompt; below the dashed line, less
than one radian across the model's configured context; below the dash-dotted line, less than one
full turn (its period ``2 pi / g`` is longer than the context: the *critical dimension* of Liu et
al., ICLR 2024, from which on a chunk never completes a period during training). Every distance is
capped at a layer's sliding-attention window, the farthest a query of that layer can look back.

Per-layer q/k maps also ring the chunks of each layer's measured *frequency band* (Oka et al., ICLR
2026: the peak chunk and the unbroken run around it at half its mean norm or more,
:func:`~ropescope.profiling.bands.frequency_band`); per-head q/k maps mark the *massive* chunks
(root-mean-square norm over 5x the head's mean; Jin et al., ICML 2025).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.patches
import matplotlib.ticker
import numpy as np

from ropescope.errors import printable
from ropescope.files import name_part
from ropescope.plots.style import (
    BAND_STYLE,
    BOUNDARY_STYLE,
    CRITICAL_STYLE,
    MASSIVE_STYLE,
    TRAINED_STYLE,
    axes_for,
    draw_map,
    save_figure,
)
from ropescope.profiling.bands import BAND_LEVEL, band_cells
from ropescope.profiling.result import TENSOR_PLURALS, Profile


def _model(profile: Profile) -> str:
    return printable(profile.meta["model_id"])


def _describe(profile: Profile) -> str:
    m = profile.meta
    return f"{printable(m['prompt_set'])}: {m['n_prompts']} prompts, {m['n_tokens']:,} tokens"


def _boundary_steps(ax, boundaries: list[int], style: dict, label: str) -> None:
    """A step line at the boundary chunk of every column (columns may differ in theta)."""
    xs = np.arange(len(boundaries) + 1) - 0.5
    ys = np.asarray(boundaries + boundaries[-1:], dtype=float) - 0.5
    ax.step(xs, ys, where="post", label=label, **style)


def _first_unrotated(geometry, layer: int) -> float:
    """First chunk of ``layer`` from which on no chunk rotates (proportional / partial RoPE); NaN
    (no line in that column) where every chunk of the layer rotates."""
    rotating = np.nonzero(geometry.frequencies(layer) > 0)[0]
    first = int(rotating[-1]) + 1 if len(rotating) else 0
    return float(first) if first < geometry.layer_chunks(layer) else float("nan")


def _mark_boundaries(ax, profile: Profile, layers: list[int], columns: int, legend: bool = True) -> None:
    geometry = profile.geometry
    seen = int(profile.meta["max_seq_len"])
    windowed = ", or the window" if any(geometry.layers[i].window for i in layers) else ""
    trained = profile.meta.get("context_length")
    lines = [(seen, 1.0, BOUNDARY_STYLE, f"< 1 rad over {seen:,} tokens (profiled)")]
    if trained:
        lines.append((trained, 1.0, TRAINED_STYLE, f"< 1 rad over {trained:,} tokens (context){windowed}"))
        critical = f"period > {trained:,} tokens{windowed} (critical dimension)"
        lines.append((trained, 2 * np.pi, CRITICAL_STYLE, critical))
    for span, angle, style, label in lines:
        per_column = [geometry.semantic_boundary(i, span, max_angle=angle) for i in layers]
        _boundary_steps(ax, per_column * columns if len(layers) == 1 else per_column, style, label)
    per_column = [_first_unrotated(geometry, i) if geometry.layers[i].rope else np.nan for i in layers]
    if not np.isnan(per_column).all():
        style = dict(color="#2ecc71", linewidth=1.6, linestyle=":")
        _boundary_steps(
            ax, per_column * columns if len(layers) == 1 else per_column, style, "below: not rotated (frequency 0)"
        )
    ax.set_ylim(max(geometry.layer_chunks(i) for i in layers) - 0.5, -0.5)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.13), fontsize=7, frameon=False)


def _mark_band(ax, profile: Profile, tensor: str) -> None:
    """Ring every chunk of each layer's measured frequency band of ``tensor`` (per-layer maps)."""
    cells = band_cells(profile, tensor)
    if cells:
        layers, chunks = zip(*cells, strict=True)
        ax.scatter(layers, chunks, label=f"frequency band (>= {BAND_LEVEL:g} x the layer's peak)", **BAND_STYLE)


def _mark_massive(ax, profile: Profile, layer: int, tensor: str) -> None:
    """Mark the massive chunks of each head of ``layer`` (per-head maps)."""
    table = profile.massive_values(tensors=(tensor,))
    table = table[table.layer == layer]
    if len(table):
        ax.scatter(table["head"], table["chunk"], label="massive chunk (RMS > 5x head mean)", **MASSIVE_STYLE)


def _hatch(ax, column: int, top: int, height: int, label: str | None, colour: str = "#9a9a9a") -> None:
    ax.add_patch(
        matplotlib.patches.Rectangle(
            (column - 0.5, top - 0.5),
            1,
            height,
            facecolor="#f4f4f4",
            edgecolor=colour,
            hatch="///",
            linewidth=0,
            label=label,
        )
    )


def _no_shared_key(profile: Profile, layer: int, tensor: str) -> bool:
    """Whether ``tensor`` is the keys of an MLA layer without RoPE (Mistral Large 4): its keys are per
    head, it has no shared RoPE key, so its own attention layer counted none (not KV sharing)."""
    return tensor == "k" and not profile.geometry.layers[layer].shared_key


def _mark_absent(ax, profile: Profile, tensor: str) -> None:
    """On a per-layer map: hatch the chunks a layer does not have (Gemma 4's 256-dim sliding heads
    drawn on the 512-dim global heads' chunk axis), the key / value columns of layers that reuse
    an earlier layer's keys and values (KV sharing), named with their source layer, and the key column
    of an MLA layer without RoPE (Mistral Large 4: no shared RoPE key to measure)."""
    geometry = profile.geometry
    smaller, shared = "no such chunk: this layer's heads are smaller", f"{TENSOR_PLURALS[tensor]} of an earlier layer"
    unkeyed = "no shared RoPE key (MLA layer without RoPE)"
    for column, lr in enumerate(geometry.layers):
        own = geometry.layer_chunks(column)
        if _no_shared_key(profile, column, tensor):
            _hatch(ax, column, 0, own, unkeyed, "#c0392b")
            unkeyed = None
        elif tensor != "q" and lr.kv_source is not None:
            _hatch(ax, column, 0, own, shared + " (KV sharing)" if shared else None, "#6c8ebf")
            shared = None
            ax.text(
                column,
                0.02 * geometry.n_chunks,
                f"= layer {lr.kv_source}",
                rotation=90,
                ha="center",
                va="top",
                fontsize=7,
                color="#1d3557",
                bbox=dict(facecolor="white", alpha=0.9, edgecolor="none", pad=1.5),
            )
        if own < geometry.n_chunks:
            _hatch(ax, column, own, geometry.n_chunks - own, smaller)
            smaller = None


def _mark_nope(ax, profile: Profile, layers: list[int]) -> None:
    """Write "NoPE" down the column of every layer that applies no RoPE (no chunk rotates there)."""
    for column, layer in enumerate(layers):
        if not profile.geometry.layers[layer].rope:
            ax.text(
                column,
                0.02 * profile.geometry.n_chunks,
                "NoPE layer",
                rotation=90,
                ha="center",
                va="top",
                fontsize=7,
                color="#c0392b",
                fontweight="bold",
                bbox=dict(facecolor="white", alpha=0.9, edgecolor="none", pad=1.5),
            )


def layer_usage_figure(
    profile: Profile, tensors: tuple[str, ...] = ("q", "k"), *, ax=None, cmap=None, norm=None, scale: str = "p99"
):
    """F3 (q, k) or F13 (v): mean chunk norm per layer, averaged over tokens and heads.

    ``ax``: one axes per tensor to draw into (default: a new figure); ``cmap``/``norm``: matplotlib's;
    ``scale``: ``p99`` (default, robust), ``linear`` or ``log`` (see :mod:`ropescope.plots.style`).
    """
    fig, axes = axes_for(ax, len(tensors), (5.2 * len(tensors), 5.6))
    layers = list(range(profile.n_layers))
    for axis, tensor in zip(axes, tensors, strict=True):
        data = profile.layer_usage(tensor).T
        title = f"{TENSOR_PLURALS[tensor]}, mean over tokens and heads"
        draw_map(fig, axis, data, "layer (0-based)", title, cmap=cmap, norm=norm, scale=scale)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        _mark_absent(axis, profile, tensor)
        if tensor != "v":
            _mark_band(axis, profile, tensor)
            _mark_boundaries(axis, profile, layers, len(layers))
        elif profile.geometry.ragged:
            axis.legend(loc="upper left", bbox_to_anchor=(0.0, -0.13), fontsize=7, frameon=False)
        _mark_nope(axis, profile, layers)
    if ax is None:
        what = " and ".join(TENSOR_PLURALS[t] for t in tensors)
        note = "values are not rotated: a control for the q/k maps; " if tensors == ("v",) else ""
        fig.suptitle(f"{_model(profile)}: RoPE frequency usage of {what} per layer\n{note}{_describe(profile)}")
        fig.tight_layout()
    return fig


def head_usage_figure(
    profile: Profile,
    layer: int,
    tensors: tuple[str, ...] = ("q", "k"),
    *,
    ax=None,
    cmap=None,
    norm=None,
    scale: str = "p99",
):
    """F4: mean chunk norm of every head of one layer (query heads for q, KV heads for k, v).

    Panels are as wide as their head count (a model with one KV head gets a narrow key panel).
    """
    widths = [max(profile.head_usage(layer, t).shape[0], 1.5) for t in tensors]  # each layer's own heads
    fig, axes = axes_for(ax, len(tensors), (2.4 + 1.1 * sum(widths) + 1.6 * len(tensors), 5.6), widths)
    source = profile.geometry.layers[layer].kv_source
    for axis, tensor in zip(axes, tensors, strict=True):
        data = profile.head_usage(layer, tensor).T
        kind = "query heads" if tensor == "q" else "KV heads"
        counted = profile.stats[tensor].count.numpy()[layer] > 0
        if data.shape[1] == 0 or not counted:  # none of its own: KV sharing, an MLA layer without RoPE
            axis.set_axis_off()
            axis.set_title(f"{TENSOR_PLURALS[tensor]}: none of its own", fontsize=10)
            why = f"reused from layer {source}\n(KV sharing)" if source is not None else "none measured"
            if _no_shared_key(profile, layer, tensor):
                why = "no shared RoPE key\n(an MLA layer without RoPE:\nits keys are per head)"
            axis.text(
                0.5,
                0.5,
                why,
                ha="center",
                va="center",
                transform=axis.transAxes,
                fontsize=9,
            )
            continue
        title = f"{TENSOR_PLURALS[tensor]}, {data.shape[1]} {kind if data.shape[1] > 1 else kind[:-1]}"
        draw_map(fig, axis, data, f"{kind[:-1]} (0-based)", title, cmap=cmap, norm=norm, scale=scale)
        axis.set_xticks(range(data.shape[1]))
        if tensor != "v":
            _mark_massive(axis, profile, layer, tensor)
            _mark_boundaries(axis, profile, [layer], data.shape[1], legend=axis is axes[0])
    if ax is None:
        theta = profile.geometry.layers[layer].theta
        theta_text = f", theta {theta:,.0f}" if theta else ""
        if not profile.geometry.layers[layer].rope:
            theta_text = ", a NoPE layer (no chunk rotates)"
        fig.suptitle(
            f"{_model(profile)}: RoPE frequency usage per head, layer {layer} (0-based){theta_text}\n"
            f"{_describe(profile)}"
        )
        fig.tight_layout()
    return fig


def write_profile_figures(profile: Profile, out_dir: str | Path, head_layer: int = 0) -> list[Path]:
    """F3 (q and k per layer), F13 (v per layer) and F4 (per head of ``head_layer``) into ``out_dir``."""
    out_dir = Path(out_dir)
    name = name_part(profile.meta["model_id"])
    paths = []
    paths += save_figure(layer_usage_figure(profile, ("q", "k")), out_dir / f"fig03_usage_per_layer_{name}")
    paths += save_figure(layer_usage_figure(profile, ("v",)), out_dir / f"fig13_value_usage_per_layer_{name}")
    paths += save_figure(
        head_usage_figure(profile, head_layer), out_dir / f"fig04_usage_per_head_layer{head_layer}_{name}"
    )
    return paths

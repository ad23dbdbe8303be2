"""Heads against position and distance (``ropescope heads --by-position``): do positional heads
keep their offset at every position, and where does each frequency quarter stop contributing to
the semantic heads' logits?"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ropescope.heads.scan import POSITIONAL, distance_term_table, position_score_table, sink_heads, sink_position_table
from ropescope.hooks.position import bucket_labels
from ropescope.profiling.bands import quarters

QUARTER_COLOURS = ("#d62828", "#f77f00", "#2a9d8f", "#1d3557")
QUARTER_NAMES = ("fastest 25%", "25-50%", "50-75%", "slowest 25%")


def _x(distance: float) -> float:
    """Axis position of a distance on the 0, 1, 2, 4, ... scale (log2 + 1, 0 at 0)."""
    return 0.0 if distance <= 0 else float(np.log2(distance) + 1)


def heads_by_position_figure(report, model_id: str):
    """Left: positional heads' score on their offset per query-position bucket. Right (one panel per
    RoPE base among the semantic heads' layers): the semantic/mixed heads' mean chunk terms per
    frequency quarter against distance, with each quarter's 1-radian distance 1/g (median g) marked."""
    table, arrays, geometry = report.table, report.by_position, report.profile.geometry
    semantic = table[table["class"].astype(str) == "semantic/mixed"]
    thetas = sorted({geometry.layers[int(layer)].theta for layer in semantic.layer}, key=lambda t: t or 0)[:2]
    fig, axes = plt.subplots(1, 1 + max(1, len(thetas)), figsize=(6.2 * (1 + max(1, len(thetas))), 4.8), squeeze=False)
    axes = axes[0]
    scores = position_score_table(report)
    positional = table[table["class"].isin(POSITIONAL)]
    labels = bucket_labels(arrays.edges)
    for _, row in positional.iterrows():
        layer, head, offset = int(row["layer"]), int(row["head"]), int(row["target_offset"])
        part = scores[(scores.layer == layer) & (scores["head"] == head) & (scores.offset == offset)]
        xs = [arrays.edges.index(p) for p in part.position_from]
        label = f"L{layer}H{head} ({row['class']}, offset {offset})"
        axes[0].plot(xs, part.score, marker="o", label=label)
    axes[0].axhline(report.threshold, color="grey", linestyle=":", label=f"threshold {report.threshold:g}")
    used = sorted({arrays.edges.index(p) for p in scores.position_from})
    axes[0].set_xticks(used, [labels[i] for i in used], rotation=45, ha="right", fontsize=8)
    axes[0].set(xlabel="query position (bucket)", ylabel="mean attention on the head's offset (0-1)", ylim=(0, 1.02))
    axes[0].set_title("positional heads by position" if len(positional) else "no positional head found", fontsize=10)
    axes[0].legend(fontsize=7)
    terms = distance_term_table(report)
    for ax, theta in zip(axes[1:], thetas or [None], strict=False):
        layers = [i for i in range(geometry.n_layers) if geometry.layers[i].theta == theta]
        heads = semantic[semantic.layer.isin(layers)]
        keys = set(zip(heads["layer"], heads["head"], strict=True))
        part = terms[[k in keys for k in zip(terms["layer"], terms["head"], strict=True)]]
        mean = part.groupby(["quarter", "distance"]).term.mean().reset_index()
        freqs = geometry.frequencies(layers[0]) if layers else np.ones(1)
        bands = quarters(len(freqs))
        for q, (colour, name) in enumerate(zip(QUARTER_COLOURS, QUARTER_NAMES, strict=True)):
            line = mean[mean.quarter == q + 1]
            ax.plot([_x(d) for d in line.distance], line.term, marker="o", markersize=3, color=colour, label=name)
            g = float(np.median(freqs[bands[q]]))
            if g > 0 and 1 / g <= line.distance.max():
                ax.axvline(_x(1 / g), color=colour, linestyle=":", linewidth=1)
        ticks = sorted(set(mean.distance))
        ax.set_xticks([_x(d) for d in ticks], [f"{d:,}" for d in ticks], rotation=45, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set(
            xlabel="relative distance r (tokens, log scale)", ylabel="mean chunk terms of the logit (sum per quarter)"
        )
        where = f"theta {theta:,.0f}" if theta else "all layers"
        ax.set_title(f"{len(heads)} semantic/mixed heads, {where}: dotted = 1 rad at 1/g", fontsize=10)
        ax.legend(fontsize=7, title="chunks", title_fontsize=7)
    fig.suptitle(f"{model_id}: heads by query position and by distance ({report.profile.meta['prompt_set']})")
    fig.tight_layout()
    return fig


def sinks_by_frequency_figure(report, model_id: str, count: int = 6):
    """Sinks by frequency: for up to ``count`` heads (the bos-sink heads first, then the strongest
    other first-token heads: :func:`~ropescope.heads.scan.sink_heads`),
    each chunk's mean term of the logit on the first token per query-position bucket (bottom: a
    diverging map, chunk 0 = fastest at the top; the distance to the sink is the query position
    itself) under the head's sink score per bucket (top)."""
    heads = sink_heads(report, count)
    table = sink_position_table(report, heads)
    arrays = report.by_position
    labels = bucket_labels(arrays.edges)
    sinks = int((report.table["class"].astype(str) == "bos-sink").sum())
    n = max(len(heads), 1)
    cols, grid_rows = min(n, 3), -(-n // 3)
    fig, grid = plt.subplots(
        2 * grid_rows,
        cols,
        figsize=(4.6 * cols + 1.0, 7.0 * grid_rows),
        squeeze=False,
        height_ratios=[1, 2.6] * grid_rows,
    )
    axes = np.stack([np.concatenate(list(grid[0::2])), np.concatenate(list(grid[1::2]))])  # [2, cells]
    for ax in axes[:, n:].ravel():
        ax.set_axis_off()
    for column, (layer, head) in enumerate(heads):
        part = table[(table.layer == layer) & (table["head"] == head)]
        buckets = sorted(set(part.position_from))
        xs = [arrays.edges.index(b) for b in buckets]
        grid = part.pivot(index="chunk", columns="position_from", values="term").reindex(columns=buckets).to_numpy()
        sink = part.groupby("position_from").sink.first().reindex(buckets).to_numpy()
        top, bottom = axes[0, column], axes[1, column]
        top.plot(range(len(xs)), sink, marker="o", color="#457b9d")
        top.set(ylim=(0, 1.02), ylabel="attention on the first token (0-1)", xticks=range(len(xs)), xticklabels=[])
        cls = part["class"].iloc[0] if len(part) else ""
        window = report.profile.geometry.layers[layer].window
        where = f", window {window:,}" if window else ", global"
        top.set_title(f"layer {layer} head {head} ({cls}{where})", fontsize=9)
        limit = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        image = bottom.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        bottom.set_xticks(range(len(xs)), [labels[i] for i in xs], rotation=45, ha="right", fontsize=8)
        bottom.set(xlabel="query position (bucket) = distance to the sink", ylabel="chunk (0 = highest frequency)")
        fig.colorbar(image, ax=bottom, label="mean chunk term of the logit on the first token (logit units)")
    if not heads:
        for ax in axes[:, 0]:
            ax.set_axis_off()
    if not sinks:
        what = (
            f"no bos-sink head at threshold {report.threshold:g}: the heads with the most attention on the first token"
        )
    else:
        what = f"the {min(sinks, len(heads))} bos-sink heads with the most attention on the first token"
        what += ", then the strongest other heads" if sinks < len(heads) else ""
    fig.suptitle(
        f"{model_id}: which frequencies build the attention sink, by query position\n{what} "
        f"({report.profile.meta['prompt_set']}; red: the chunk raises the first token's logit)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))  # room for the two-line title
    return fig

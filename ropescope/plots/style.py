"""The one visual style of every ropescope figure: colour map, colour scale, boundary lines, heat
maps, token tick labels and saving.

Heat maps put chunk 0 (the highest frequency) at the top and carry a labelled colour bar that says
which colour scale was used. Usage maps default to a *robust* scale: linear from 0 to the 99th
percentile of the map, values above it drawn in the darkest colour (the bar's arrow), so that a few
outlier chunks (keys of Gemma 3 reach 75) do not wash the rest of the map out. ``scale="linear"``
(0 to the maximum) and ``scale="log"`` are the alternatives; any matplotlib ``norm=`` overrides all.
Figures are written as a 150 dpi PNG and a PDF and closed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from mpl_toolkits.axes_grid1 import make_axes_locatable

CMAP = "magma_r"
MASKED_COLOUR = "#d9d9d9"  # masked attention entries (future keys, outside a window), in every map
TRIGGER_COLOUR = "#0077b6"
# head classes, in every figure and in the report page (which gets them from here, with PALETTE)
CLASS_COLOURS = {
    "diagonal": "#d62828",
    "previous-token": "#f77f00",
    "positional-other": "#fcbf49",
    "bos-sink": "#457b9d",
    "semantic/mixed": "#8d99ae",
}
# the report page's series colours: queries / keys, offset bars / the first token, masked cells
BAND_COLOUR, MASSIVE_COLOUR = "#00e5ff", "#38b000"  # rings: a layer's frequency band, a massive chunk
PALETTE = {
    "query": "#d62828",
    "key": "#1d3557",
    "offset": "#f77f00",
    "sink": "#457b9d",
    "masked": MASKED_COLOUR,
    "band": BAND_COLOUR,
    "massive": MASSIVE_COLOUR,
}
BOUNDARY_STYLE = {"color": "#00b4d8", "linewidth": 1.8}
TRAINED_STYLE = {"color": "#2a9d8f", "linewidth": 1.4, "linestyle": "--"}
BAND_STYLE = {"marker": "o", "s": 16, "facecolors": "none", "edgecolors": BAND_COLOUR, "linewidths": 1.0, "zorder": 4}
MASSIVE_STYLE = {
    "marker": "D",
    "s": 14,
    "facecolors": "none",
    "edgecolors": MASSIVE_COLOUR,
    "linewidths": 1.1,
    "zorder": 4,
}
CRITICAL_STYLE = {"color": "#e76f51", "linewidth": 1.3, "linestyle": "-."}  # period longer than the context
SCALES = ("p99", "linear", "log")
ROBUST_PERCENTILE = 99.0


def colour_scale(data: np.ndarray, scale: str = "p99") -> tuple[matplotlib.colors.Normalize, str, str]:
    """(norm, what the colour bar should say about it, the bar's ``extend``) for non-negative ``data``.

    ``p99``: linear 0..99th percentile, brighter values clipped; ``linear``: 0..max; ``log``: from
    the smallest positive value to the maximum.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    finite = np.asarray(data, dtype=float)[np.isfinite(data)]
    top = float(finite.max()) if finite.size else 1.0
    if scale == "log":
        positive = finite[finite > 0]
        low = float(positive.min()) if positive.size else 1e-6
        return matplotlib.colors.LogNorm(low, max(top, low * 10)), "log scale", "neither"
    if scale == "linear":
        return matplotlib.colors.Normalize(0, top or 1.0), "linear, 0 to max", "neither"
    clip = float(np.percentile(finite, ROBUST_PERCENTILE)) if finite.size else 1.0
    clip = clip or top or 1.0
    extend = "max" if top > clip else "neither"
    return matplotlib.colors.Normalize(0, clip), f"clipped at 99th pct = {clip:.3g}, max {top:.3g}", extend


def masked_cmap(cmap=None) -> matplotlib.colors.Colormap:
    """``cmap`` (a name or a Colormap; default :data:`CMAP`) drawing masked entries in :data:`MASKED_COLOUR`."""
    base = matplotlib.colormaps[cmap or CMAP] if isinstance(cmap or CMAP, str) else cmap
    return base.with_extremes(bad=MASKED_COLOUR)


def draw_map(
    fig,
    ax,
    data: np.ndarray,
    xlabel: str,
    title: str,
    *,
    cmap=None,
    norm=None,
    scale: str = "p99",
    label: str = "mean chunk norm (2-norm, activation units)",
):
    """Heat map of ``data[chunks, columns]`` with chunk 0 at the top and a colour bar naming the scale."""
    if norm is None:
        norm, said, extend = colour_scale(data, scale)
    else:
        said, extend = ("log scale" if isinstance(norm, matplotlib.colors.LogNorm) else ""), "neither"
    image = ax.imshow(data, aspect="auto", cmap=cmap or CMAP, norm=norm, interpolation="nearest", origin="upper")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("chunk (0 = highest frequency)")
    ax.set_title(title, fontsize=10)
    cax = make_axes_locatable(ax).append_axes("right", size=0.16, pad=0.08)  # inches: same bar on any panel width
    bar = fig.colorbar(image, cax=cax, extend=extend)
    bar.set_label(f"{label}\n{said}" if said else label, fontsize=8)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return image


def axes_for(ax, count: int, figsize: tuple[float, float], width_ratios=None):
    """(figure, list of ``count`` axes): new ones, or the caller's ``ax`` (one Axes or a sequence)."""
    if ax is None:
        grid = {"width_ratios": width_ratios} if width_ratios else None
        fig, axes = plt.subplots(1, count, figsize=figsize, squeeze=False, gridspec_kw=grid)
        return fig, list(axes[0])
    axes = list(np.atleast_1d(ax))
    if len(axes) != count:
        raise ValueError(f"this figure draws {count} panels; pass {count} axes as ax=, got {len(axes)}")
    return axes[0].figure, axes


def token_labels(tokens: list[str], width: int = 14) -> list[str]:
    """Tick labels of tokens: escapes shown (``\\n``), long tokens cut with an ellipsis, never mid-glyph."""
    out = []
    for token in tokens:
        text = repr(token)[1:-1] or "''"
        out.append(text if len(text) <= width else text[: width - 1] + "\u2026")
    return out


def set_token_ticks(ax, tokens: list[str], rows: bool = True, marked: set[int] = frozenset()) -> None:
    """Every token as a tick label (at most 64; beyond that every k-th position, numbered)."""
    n = len(tokens)
    if n <= 64:
        positions = list(range(n))
        labels = token_labels(tokens)
        size = 8 if n <= 32 else 7
    else:
        step = int(np.ceil(n / 32))
        positions = list(range(0, n, step))
        labels = [str(i) for i in positions]
        size = 8
    ax.set_xticks(positions, labels, rotation=90, fontsize=size)
    if rows:
        ax.set_yticks(positions, labels, fontsize=size)
    axes_ticks = [ax.get_xticklabels()] + ([ax.get_yticklabels()] if rows else [])
    for ticks in axes_ticks:
        for pos, tick in zip(positions, ticks, strict=False):
            if pos in marked:
                tick.set_color(TRIGGER_COLOUR)
                tick.set_fontweight("bold")


def save_figure(fig, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (150 dpi PNG) and close it."""
    paths = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths

"""The one visual style of every ropescope figure: colour map, boundary lines, heat maps, saving.

Heat maps put chunk 0 (the highest frequency) at the top and carry a labelled colour bar; figures
are written as a 150 dpi PNG and a PDF and closed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

CMAP = "magma_r"
BOUNDARY_STYLE = {"color": "#00b4d8", "linewidth": 1.8}
TRAINED_STYLE = {"color": "#2a9d8f", "linewidth": 1.4, "linestyle": "--"}


def draw_map(fig, ax, data: np.ndarray, xlabel: str, title: str):
    """Heatmap of ``data[chunks, columns]`` with chunk 0 at the top and a labelled colour bar."""
    image = ax.imshow(data, aspect="auto", cmap=CMAP, interpolation="nearest", origin="upper")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("chunk (0 = highest frequency)")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("mean chunk norm (2-norm, activation units)")
    return image


def save_figure(fig, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (150 dpi PNG) and close it."""
    paths = []
    for fmt in formats:
        path = Path(f"{stem}.{fmt}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths

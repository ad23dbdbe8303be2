"""Compare two profiles: per-(layer, chunk) difference and ratio maps of the mean chunk norm, and
how similarly the two rank the chunks (Spearman rank correlation per layer and overall; the F19
number generalised to any pair of profiles).

``by`` says how the two are aligned:

- ``"geometry"`` (default): the same RoPE geometry (layers, chunks, frequencies): e.g. two prompt
  sets, two dtypes or two checkpoints of one model. Anything else is refused with one line.
- ``"chunk"``: the same numbers of layers and chunks, compared by chunk index even where the
  frequencies differ (a fine-tune that changed theta).
- ``"relative"``: any two models; both maps are averaged onto a grid of relative depth (layer /
  layers) and relative chunk position (chunk / chunks) as fine as the coarser model, so chunk 0
  (fastest) meets chunk 0 and the slowest meets the slowest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ropescope.errors import RopescopeError, printable
from ropescope.options import ALIGNMENTS

TENSORS = ("q", "k", "v")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation uses them."""
    return pd.Series(values).rank(method="average").to_numpy()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally long vectors over the cells both have (a layer's
    missing chunks are NaN); NaN where either is constant or fewer than two cells remain."""
    a, b = np.ravel(a), np.ravel(b)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 2:
        return float("nan")
    ra, rb = _ranks(a[both]), _ranks(b[both])
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _bin_average(usage: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``usage[L, C]`` averaged onto ``rows`` x ``cols`` equal bins of relative position."""
    layer_bins = np.array_split(np.arange(usage.shape[0]), rows)
    chunk_bins = np.array_split(np.arange(usage.shape[1]), cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bin holding only chunks no layer has: NaN
        return np.array([[np.nanmean(usage[np.ix_(lb, cb)]) for cb in chunk_bins] for lb in layer_bins])


def geometry_difference(a, b) -> str | None:
    """None when the two geometries are the same, else what differs, in words."""
    ga, gb = a.geometry, b.geometry
    if ga.n_layers != gb.n_layers:
        return f"{ga.n_layers} vs {gb.n_layers} layers"
    if ga.n_chunks != gb.n_chunks:
        return f"{ga.n_chunks} vs {gb.n_chunks} chunks per head"
    for layer in range(ga.n_layers):
        if not np.allclose(ga.frequencies(layer), gb.frequencies(layer), rtol=1e-9, atol=0):
            return f"different RoPE frequencies from layer {layer} on"
    return None


@dataclass
class ProfileComparison:
    """What :func:`compare_profiles` returns.

    ``maps[tensor]``: tidy table, one row per (layer, chunk) of the aligned grid: ``a`` and ``b``
    (mean chunk norm over tokens and heads, activation units), ``difference`` (b - a) and ``ratio``
    (b / a). ``correlations``: one row per (tensor, layer): ``spearman`` between the two layers'
    chunk usage. ``overall[tensor]``: Spearman over every (layer, chunk) cell.
    """

    a_name: str
    b_name: str
    by: str
    maps: dict[str, pd.DataFrame]
    correlations: pd.DataFrame
    overall: dict[str, float]

    def __repr__(self) -> str:
        parts = ", ".join(f"{t} {v:.3f}" for t, v in self.overall.items() if np.isfinite(v))
        return f"ProfileComparison({self.a_name!r} vs {self.b_name!r} by {self.by}; overall Spearman {parts})"

    def grid(self, tensor: str, column: str) -> np.ndarray:
        """``[layers, chunks]`` array of ``column`` (a, b, difference, ratio) on the aligned grid."""
        frame = self.maps[tensor]
        return frame.pivot(index="layer", columns="chunk", values=column).to_numpy()


def _label(profile) -> str:
    m = profile.meta
    return printable(f"{m.get('model_id')} / {m.get('prompt_set')} / {m.get('dtype')}")


def compare_profiles(a, b, by: str = "geometry") -> ProfileComparison:
    """Align ``a`` and ``b`` (see the module docstring) and compare their usage of every chunk."""
    if by not in ALIGNMENTS:
        raise RopescopeError(f"by must be one of {', '.join(ALIGNMENTS)}, got {by!r}")
    differs = geometry_difference(a, b)
    if by == "geometry" and differs:
        raise RopescopeError(
            f"the profiles differ in RoPE geometry ({differs}); compare by chunk index (by='chunk', "
            "--by chunk) when the layer and chunk counts match, or by relative position (by='relative', --by relative)"
        )
    if by == "chunk" and differs and ("layers" in differs or "chunks" in differs):
        raise RopescopeError(f"--by chunk needs the same layer and chunk counts, but the profiles have {differs}")
    maps, rows, overall = {}, [], {}
    for tensor in [t for t in TENSORS if t in a.tensors and t in b.tensors]:  # a head scan has no values
        ua, ub = a.layer_usage(tensor), b.layer_usage(tensor)
        if by == "relative":
            shape = (min(ua.shape[0], ub.shape[0]), min(ua.shape[1], ub.shape[1]))
            ua, ub = _bin_average(ua, *shape), _bin_average(ub, *shape)
        layers, chunks = np.meshgrid(np.arange(ua.shape[0]), np.arange(ua.shape[1]), indexing="ij")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = ub / ua
        maps[tensor] = pd.DataFrame(
            {
                "layer": layers.ravel(),
                "chunk": chunks.ravel(),
                "a": ua.ravel(),
                "b": ub.ravel(),
                "difference": (ub - ua).ravel(),
                "ratio": ratio.ravel(),
            }
        )  # NaN in a and b: a chunk (or key head) that layer does not have
        for layer in range(ua.shape[0]):
            rows.append({"tensor": tensor, "layer": layer, "spearman": spearman(ua[layer], ub[layer])})
        overall[tensor] = spearman(ua, ub)
    return ProfileComparison(_label(a), _label(b), by, maps, pd.DataFrame(rows), overall)

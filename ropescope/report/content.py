"""The numbers a report shows, as plain JSON-able data (lists and dicts of floats and strings).

Every number is taken from the profile or head table as saved, never recomputed differently:
``usage[tensor][layer][chunk]`` is :meth:`Profile.layer_usage` (mean chunk 2-norm over counted
tokens and heads), ``head_usage[tensor][layer][head][chunk]`` is :meth:`Profile.head_usage`,
``frequency`` is the layer's RoPE frequency of the chunk (rad/token) and ``wavelength`` its period
(tokens). ``band[tensor]`` lists the ``[layer, chunk]`` cells of each layer's measured frequency
band (:meth:`Profile.frequency_band`), ``massive[tensor]`` the ``[layer, head, chunk, ratio]`` of
every massive chunk (:meth:`Profile.massive_values`), both for queries and keys. The head table is
the scan's own (one row per layer and query head).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ropescope.profiling.bands import BANDS, band_cells, band_shares
from ropescope.profiling.result import TENSORS, Profile
from ropescope.profiling.summary import summary_text

META_SHOWN = (
    "model_id",
    "model_type",
    "dtype",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "n_chunks",
    "context_length",
    "n_prompts",
    "n_tokens",
    "max_seq_len",
    "include_bos",
    "prompt_set",
    "versions",
)


def _floats(array) -> list:
    """Nested lists of floats with NaN/inf as None (JSON has no NaN)."""
    array = np.asarray(array, dtype=float)
    if array.ndim == 0:
        value = float(array)
        return float(f"{value:.6g}") if math.isfinite(value) else None  # 6 significant digits: the page's precision
    return [_floats(part) for part in array]


def _records(frame: pd.DataFrame | None) -> list[dict] | None:
    if frame is None:
        return None
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else _plain(v)) for k, v in row.items()})
    return out


def _plain(value):
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def massive_cells(profile: Profile, tensor: str) -> list[list]:
    """``[layer, head, chunk, ratio]`` of every massive chunk of ``tensor`` (ratio to its head's mean)."""
    table = profile.massive_values(tensors=(tensor,))
    return [[int(r.layer), int(r.head), int(r.chunk), float(f"{r.ratio:.4g}")] for r in table.itertuples()]


def geometry_data(profile: Profile) -> dict:
    geometry = profile.geometry
    layers = []
    for i, layer in enumerate(geometry.layers):
        freqs = geometry.frequencies(i)
        with np.errstate(divide="ignore"):
            wavelengths = 2 * np.pi / freqs
        layers.append(
            {
                "theta": layer.theta,
                "window": layer.window,
                "type": layer.layer_type,
                "head_dim": geometry.layer_head_dim(i),
                "chunks": geometry.layer_chunks(i),
                "frequency": _floats(freqs),
                "wavelength": _floats(wavelengths),
                "boundary_profiled": geometry.semantic_boundary(i, int(profile.meta["max_seq_len"])),
            }
        )
    return {
        "head_dim": geometry.head_dim,
        "rotary_dim": geometry.rotary_dim,
        "layout": geometry.layout,
        "n_chunks": geometry.n_chunks,
        "layers": layers,
    }


def reproduction_rows(
    profile: Profile,
    heads: pd.DataFrame | None = None,
    agreement: dict | None = None,
    causal: pd.DataFrame | None = None,
) -> list[dict]:
    """The paper's claims (ids are its figure numbers: F3 is Figure 3) next to what this run measured."""
    rows = []
    for tensor, name in (("k", "keys"), ("q", "queries")):
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = band_shares(profile, tensor)
        finite = np.isfinite(shares).all(axis=1)
        slow = int((np.argmax(np.nan_to_num(shares), axis=1)[finite] == len(BANDS) - 1).sum())
        rows.append(
            {
                "id": "F3",
                "claim": f"lowest-frequency chunks carry the largest {name} norms in most layers",
                "paper": "yes, in almost every layer (Gemma 7B)",
                "this run": f"slowest quarter dominates in {slow} of {int(finite.sum())} layers "
                f"({np.nanmean(shares[:, -1]):.0%} of the norm on average, fastest quarter "
                f"{np.nanmean(shares[:, 0]):.0%})",
            }
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        values = band_shares(profile, "v")
    values = values if np.isfinite(values).any() else None  # a head scan profiles q and k only
    rows.append(
        {
            "id": "F13",
            "claim": "values (not rotated) show no frequency structure",
            "paper": "none",
            "this run": "values were not profiled in this run"
            if values is None
            else f"slowest quarter {np.nanmean(values[:, -1]):.3f}, fastest {np.nanmean(values[:, 0]):.3f} "
            "of the norm (0.25 each = flat)",
        }
    )
    if heads is not None and agreement is not None:
        rows.append(
            {
                "id": "F4-F6",
                "claim": "heads using the highest frequencies are the diagonal / previous-token heads",
                "paper": "by eye",
                "this run": f"Spearman {agreement['spearman']:.2f} between largest offset score and "
                f"high-frequency usage over {len(heads)} heads; {agreement['n_positional']} positional heads, "
                f"precision at n {agreement['precision_at_n']:.2f}",
            }
        )
    if causal is not None and len(causal):
        parts = []
        for (layer, head, offset), part in causal.groupby(["layer", "head", "offset"], sort=False):
            score = dict(zip(part.condition, part.score, strict=False))
            parts.append(
                f"L{layer}H{head} offset {offset}: {score.get('none', float('nan')):.3f} -> "
                f"{score.get('fastest', float('nan')):.3f} (fastest zeroed) vs "
                f"{score.get('slowest', float('nan')):.3f} (slowest zeroed)"
            )
        rows.append(
            {
                "id": "causal",
                "claim": "zeroing a positional head's fastest chunks destroys its pattern, the slowest do not",
                "paper": "not run in the paper",
                "this run": "; ".join(parts),
            }
        )
    return rows


def report_data(
    profile: Profile,
    *,
    heads: pd.DataFrame | None = None,
    agreement: dict | None = None,
    causal: pd.DataFrame | None = None,
    attention: dict | None = None,
    threshold: float | None = None,
) -> dict:
    """Everything the page shows. ``attention``: ``{"tokens": [...], "heads": {"L,H": [[p]]}}``
    (attention probabilities of every head on one prompt; see
    :func:`ropescope.heads.views.prompt_attention`)."""
    if heads is not None:
        heads = heads.copy()
        heads["class"] = heads["class"].astype(str)
    meta = {k: profile.meta.get(k) for k in META_SHOWN}
    return {
        "meta": meta,
        "geometry": geometry_data(profile),
        "usage": {t: _floats(profile.layer_usage(t)) for t in TENSORS},
        "head_usage": {t: _floats(profile.stats[t].mean.numpy()) for t in TENSORS},
        "band": {t: [list(cell) for cell in band_cells(profile, t)] for t in ("q", "k")},
        "massive": {t: massive_cells(profile, t) for t in ("q", "k")},
        "summary": summary_text(profile),
        "reproduction": reproduction_rows(profile, heads, agreement, causal),
        "heads": _records(heads),
        "threshold": threshold,
        "causal": _records(causal),
        "attention": attention,
    }

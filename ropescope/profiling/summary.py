"""A short text summary of a Profile: which frequency band holds most of q and k, per layer.

The chunks of a layer are cut into four equal bands by frequency rank (band 1 = the fastest
quarter, band 4 = the slowest). A band's *share* is the sum of its chunks' mean norms over the
sum across all chunks (mean over tokens and heads), so the four shares of a layer add up to 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ropescope.profiling.bands import BANDS, band_shares
from ropescope.profiling.result import Profile

NO_DATA = "no data"


def summary_frame(profile: Profile) -> pd.DataFrame:
    """Per layer and tensor (q, k): the four band shares, the dominant band and the semantic share.

    ``semantic_share`` is the share of chunks turning less than 1 radian over the longest profiled
    prompt. A layer in which no token was counted (every one non-finite and left out by
    ``on_nonfinite="skip"``) has NaN shares and ``dominant_band`` ``"no data"``.
    """
    rows = []
    geometry, seen = profile.geometry, int(profile.meta["max_seq_len"])
    for tensor in ("q", "k"):
        counted = profile.stats[tensor].count.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            shares, usage = band_shares(profile, tensor), profile.layer_usage(tensor)
        for layer in range(profile.n_layers):
            boundary = geometry.semantic_boundary(layer, seen)
            row = {"tensor": tensor, "layer": layer, "theta": geometry.layers[layer].theta}
            if counted[layer] == 0:
                row.update({band: float("nan") for band in BANDS}, dominant_band=NO_DATA, semantic_share=float("nan"))
            else:
                row.update({band: float(s) for band, s in zip(BANDS, shares[layer], strict=True)})
                row["dominant_band"] = BANDS[int(np.argmax(shares[layer]))]
                row["semantic_share"] = float(usage[layer, boundary:].sum() / usage[layer].sum())
            rows.append(row)
    return pd.DataFrame(rows)


def summary_text(profile: Profile) -> str:
    """Readable per-layer table of :func:`summary_frame` plus one headline line per tensor."""
    frame = summary_frame(profile)
    m = profile.meta
    lines = [
        f"ropescope profile of {m['model_id']} on {m['prompt_set']} "
        f"({m['n_prompts']} prompts, {m['n_tokens']:,} tokens counted, BOS "
        f"{'included' if m['include_bos'] else 'excluded'}, longest prompt {m['max_seq_len']} tokens)",
        "Share of each layer's mean chunk norm by frequency quarter (layers 0-based):",
        "",
    ]
    header = f"{'tensor':<6} {'layer':>5} {'theta':>10}  " + "  ".join(f"{b:>11}" for b in BANDS)
    lines += [header + f"  {'dominant':>11}  {'<1 rad':>6}", "-" * (len(header) + 23)]
    for row in frame.itertuples(index=False):
        d = row._asdict()
        theta = f"{d['theta']:,.0f}" if d["theta"] else "?"
        shares = "  ".join(f"{row[3 + i]:>11.3f}" for i in range(len(BANDS)))
        lines.append(
            f"{d['tensor']:<6} {d['layer']:>5} {theta:>10}  {shares}  "
            f"{d['dominant_band']:>11}  {d['semantic_share']:>6.3f}"
        )
    lines.append("")
    for tensor in ("q", "k"):
        part = frame[frame.tensor == tensor]
        empty = part.layer[part.dominant_band == NO_DATA].tolist()
        part = part[part.dominant_band != NO_DATA]
        slow = int((part.dominant_band == BANDS[-1]).sum())
        fast = int((part.dominant_band == BANDS[0]).sum())
        lines.append(
            f"{tensor}: the slowest quarter dominates in {slow} of {len(part)} layers, the fastest quarter in {fast}."
            + (f" Layers {', '.join(map(str, empty))} had no finite tokens and are left out." if empty else "")
        )
    massive = profile.massive_values()
    if len(massive):
        counts = []
        for tensor in dict.fromkeys(massive.tensor):
            mine = massive.tensor == tensor
            counts.append(f"{tensor} {int(mine.sum())} ({int((mine & massive.slow).sum())} on the slow side)")
        lines.append(
            "Massive chunks (root-mean-square norm above 5x their head's mean, Jin et al. 2025): "
            + ", ".join(counts)
            + "; see massive_values."
        )
    lost = {t: n for t, n in (m.get("nonfinite_tokens") or {}).items() if any(n)}
    if lost:
        parts = [f"{t} {sum(n):,} (layers {', '.join(str(i) for i, c in enumerate(n) if c)})" for t, n in lost.items()]
        lines.append("Tokens left out as non-finite (NaN/inf): " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"

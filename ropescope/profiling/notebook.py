"""Short text and HTML views of a :class:`~ropescope.profiling.result.Profile` for notebooks and
terminals: one line of what it is, and a table of each layer's share of q and k norm in each
frequency quarter, the cells shaded by the share (no JavaScript, so it shows in any notebook)."""

from __future__ import annotations

import html

import numpy as np

from ropescope.profiling.bands import BANDS, band_shares


def profile_line(profile) -> str:
    """``Profile(model, prompt set: N prompts, T tokens; L layers x H/KV heads x C chunks; dtype)``."""
    m = profile.meta
    return (
        f"Profile({m.get('model_id')!r}, {m.get('prompt_set')!r}: {m.get('n_prompts')} prompts, "
        f"{int(m.get('n_tokens', 0)):,} tokens; {m.get('n_layers')} layers x {m.get('n_heads')} query / "
        f"{m.get('n_kv_heads')} KV heads x {m.get('n_chunks')} chunks; {m.get('dtype')})"
    )


def _shade(share: float) -> str:
    """A background from white (share 0) to dark red (share 0.5 or more) and a readable text colour."""
    if not np.isfinite(share):
        return "background:#eeeeee"
    t = min(1.0, share / 0.5)
    r, g, b = (int(255 + (c - 255) * t) for c in (160, 20, 40))
    return f"background:rgb({r},{g},{b});color:{'white' if t > 0.6 else 'black'}"


def profile_html(profile) -> str:
    """The one line and, for queries and keys, each layer's four band shares as shaded cells."""
    parts = [f"<p><b>{html.escape(profile_line(profile))}</b></p>"]
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {t: band_shares(profile, t) for t in ("q", "k")}
    head = "".join(f"<th>{t} {html.escape(b)}</th>" for t in ("q", "k") for b in BANDS)
    rows = []
    for layer in range(profile.n_layers):
        cells = "".join(
            f"<td style='{_shade(shares[t][layer, i])};text-align:right'>{shares[t][layer, i]:.2f}</td>"
            for t in ("q", "k")
            for i in range(len(BANDS))
        )
        rows.append(f"<tr><td>{layer}</td>{cells}</tr>")
    parts.append(
        "<p>Share of each layer's mean chunk norm by frequency quarter (fastest to slowest; "
        "layers 0-based). <code>ropescope report</code> draws the full maps.</p>"
        f"<table><thead><tr><th>layer</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(parts)

"""Write the report as one self-contained HTML file: the data as embedded JSON, the page's CSS and
JavaScript inline (``assets/``), the colour map as a 256-colour table taken from matplotlib so the
page and the PNG figures share colours. Nothing is fetched: no CDN, no font, no image URL.

Why no plotting library: the page needs heat maps with hover, a bar chart, a line chart and a
sortable table. Plotly's offline bundle alone is about 3.5 MB per page and Bokeh's about 1 MB; the
hand-written canvas code here is about 20 kB, has no dependency to keep up to date and draws the
same colour map as the figures.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import string
from importlib import resources
from pathlib import Path

import matplotlib
import matplotlib.colors

from ropescope.files import atomic_path
from ropescope.plots.style import CLASS_COLOURS, CMAP, PALETTE

NO_HEADS = (
    "This run has no head scan. Run <code>ropescope heads MODEL --report</code> for the head table, "
    "the per-head view and the causal test."
)


def _asset(name: str) -> str:
    return resources.files("ropescope.report").joinpath("assets", name).read_text(encoding="utf-8")


def _colour_table() -> list[str]:
    cmap = matplotlib.colormaps[CMAP]  # the figures' colour map
    return [matplotlib.colors.to_hex(cmap(i / 255)) for i in range(256)]


def _embedded_json(data: dict) -> str:
    """JSON that stays data inside a ``<script type="application/json">`` element, whatever strings it holds.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where ``\\u003c`` etc. mean the same
    characters to ``JSON.parse``; so no ``</script>``, ``<!--`` or ``<script`` from a file can end
    the element or switch the HTML parser into another state.
    """
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    for raw in "&<>\u2028\u2029":
        text = text.replace(raw, f"\\u{ord(raw):04x}")
    return text


def _csp_hash(source: str) -> str:
    """The Content-Security-Policy source expression that allows exactly this inline script or style."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _meta_line(meta: dict) -> str:
    parts = [
        f"{meta.get('prompt_set')}: {meta.get('n_prompts')} prompts, {meta.get('n_tokens', 0):,} tokens counted",
        f"longest prompt {meta.get('max_seq_len')} tokens",
        f"{meta.get('n_layers')} layers, {meta.get('n_heads')} query / {meta.get('n_kv_heads')} KV heads, "
        f"{meta.get('n_chunks')} chunks",
        f"{meta.get('dtype')}",
    ]
    versions = meta.get("versions") or {}
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    return " &middot; ".join(html.escape(str(p)) for p in parts)


def _reproduction_table(rows: list[dict]) -> str:
    keys = ("id", "claim", "paper", "this run")
    head = "".join(f"<th class='text'>{k}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td class='text'>{html.escape(str(r[k]))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return f"<table id='reproduction-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(data: dict) -> str:
    """The whole HTML page of :func:`ropescope.report.content.report_data`'s ``data``."""
    data = {**data, "colormap": _colour_table(), "palette": {**PALETTE, "classes": CLASS_COLOURS}}
    meta = data["meta"]
    title = html.escape(f"ropescope report: {meta.get('model_id')}")
    threshold = data.get("threshold")
    heads = (
        string.Template(_asset("heads.html")).substitute(threshold=f" ({threshold:g})" if threshold else "")
        if data.get("heads")
        else f"<p class='empty'>{NO_HEADS}</p>"
    )
    css, js = _asset("report.css"), _asset("report.js")
    return string.Template(_asset("page.html")).substitute(
        title=title,
        script_hash=_csp_hash(js),
        style_hash=_csp_hash(css),
        css=css,
        meta=_meta_line(meta),
        heads=heads,
        summary=html.escape(data["summary"]),
        reproduction=_reproduction_table(data["reproduction"]),
        data=_embedded_json(data),
        js=js,
    )


def write_report(data: dict, path: str | os.PathLike) -> Path:
    """Write the page to ``path`` (atomically: a reader never sees half a file)."""
    path = Path(path)
    text = render_page(data)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path

"""Plot functions as a notebook user calls them: robust colour scale, ``ax=``/``cmap=``/``norm=``,
masked attention in grey, the trigger token marked, the positional-head triptych's title."""

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tiny import DecodingCharTokenizer, tiny_model  # noqa: E402

from ropescope import profile  # noqa: E402
from ropescope.heads.views import head_view  # noqa: E402
from ropescope.plots.heads import (  # noqa: E402
    attention_figure,
    chunk_norms_figure,
    logits_figure,
    positional_head_figure,
    trigger_positions,
)
from ropescope.plots.style import colour_scale, token_labels  # noqa: E402
from ropescope.plots.usage import head_usage_figure, layer_usage_figure  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["the cat sat on the mat in the sun", "a dog ran in the park and in the rain"]


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model("gemma3")
    return model, DecodingCharTokenizer()


@pytest.fixture(scope="module")
def tiny_profile(tiny):
    return profile(*tiny, TEXTS)


def test_robust_scale_clips_at_the_99th_percentile():
    data = np.concatenate([np.linspace(0, 1, 999), [75.0]])
    norm, said, extend = colour_scale(data)
    assert norm.vmin == 0 and norm.vmax == pytest.approx(np.percentile(data, 99))
    assert extend == "max" and "99th" in said and "75" in said
    norm, _, extend = colour_scale(data, "linear")
    assert norm.vmax == 75.0 and extend == "neither"
    norm, said, _ = colour_scale(data, "log")
    assert isinstance(norm, matplotlib.colors.LogNorm) and norm.vmin == pytest.approx(data[data > 0].min())
    with pytest.raises(ValueError, match="scale must be one of"):
        colour_scale(data, "cubic")


def test_usage_figures_draw_into_the_callers_axes(tiny_profile):
    fig, axes = plt.subplots(1, 2)
    norm = matplotlib.colors.Normalize(0, 3)
    assert layer_usage_figure(tiny_profile, ax=axes, cmap="viridis", norm=norm) is fig
    image = axes[0].images[0]
    assert image.get_cmap().name == "viridis" and image.norm is norm
    expected = tiny_profile.layer_usage("q").T
    np.testing.assert_allclose(image.get_array(), expected)
    with pytest.raises(ValueError, match="pass 2 axes"):
        layer_usage_figure(tiny_profile, ax=axes[0])
    plt.close("all")


def test_usage_colour_bar_names_the_scale(tiny_profile):
    fig = layer_usage_figure(tiny_profile)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("99th pct" in label for label in labels)
    fig = head_usage_figure(tiny_profile, 1, scale="log")
    assert any("log scale" in ax.get_ylabel() for ax in fig.axes)
    widths = [ax.get_position().width for ax in fig.axes[:3:2]]  # q panel (4 heads) wider than k (2 KV heads)
    assert widths[0] > widths[1]
    plt.close("all")


def test_attention_masks_future_keys_in_grey_and_marks_the_trigger(tiny):
    view = head_view(*tiny, 1, 2, "in the in the cat", max_tokens=12)
    fig = attention_figure(view, "tiny", trigger="i")
    image = fig.axes[0].images[0]
    mask = np.ma.getmaskarray(image.get_array())
    np.testing.assert_array_equal(mask, np.isnan(view.logits))
    assert mask[0, 1] and not mask[1, 0]  # the future is masked, the past is not
    assert image.get_cmap().get_bad()[:3] == pytest.approx(matplotlib.colors.to_rgb("#d9d9d9"))
    marked = trigger_positions(view, "i")
    assert marked == {i for i, t in enumerate(view.tokens) if t == "i"}
    boxes = [p for p in fig.axes[0].patches if isinstance(p, matplotlib.patches.Rectangle)]
    assert len(boxes) == len([j for j in marked if j + 1 < len(view.tokens)])
    assert "trigger token 'i'" in fig.axes[0].get_title()
    bold = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_fontweight() == "bold"]
    assert bold and all(t == "i" for t in bold)
    logits = logits_figure(view, "tiny", trigger="i").axes[0].images[0]
    np.testing.assert_array_equal(np.ma.getmaskarray(logits.get_array()), np.isnan(view.logits))
    fig = chunk_norms_figure(view, "tiny")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), view.q_chunk_norms.T)
    plt.close("all")


def test_positional_head_triptych_says_class_and_threshold(tiny):
    view = head_view(*tiny, 0, 1, "the cat sat", max_tokens=8)
    fig = positional_head_figure(view, "tiny", "previous-token", 0.61, 0.5)
    assert "previous-token head" in fig._suptitle.get_text() and ">= threshold 0.5" in fig._suptitle.get_text()
    assert [a.get_title() for a in fig.axes if a.get_title()][:3] == [
        "queries: chunk norms",
        "keys: chunk norms",
        "attention (grey: masked)",
    ]
    plt.close("all")


def test_token_labels_are_escaped_and_cut_with_an_ellipsis():
    assert token_labels(["\n", " outrageously long token"]) == ["\\n", " outrageously\u2026"]


def test_no_two_committed_figures_are_identical():
    digests = {}
    for path in sorted((REPO / "figures").glob("*.png")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest not in digests, f"{path.name} is a copy of {digests.get(digest)}"
        digests[digest] = path.name
    assert len(digests) >= 15


def test_maps_mark_the_critical_dimension(tiny_profile):
    """The dash-dotted line of every q/k map sits at each layer's first chunk whose period 2 pi / g
    is longer than the configured context (or the layer's window): found here by an explicit loop."""
    geometry, context = tiny_profile.geometry, tiny_profile.meta["context_length"]
    fig = layer_usage_figure(tiny_profile)
    for axis in fig.axes[:2]:  # queries and keys
        (line,) = [ln for ln in axis.get_lines() if "critical dimension" in ln.get_label()]
        expected = []
        for layer in range(geometry.n_layers):
            g = geometry.frequencies(layer)
            span = min(context, geometry.layers[layer].window or context)
            expected.append(next((c for c in range(len(g)) if 2 * np.pi / g[c] > span), len(g)))
        np.testing.assert_array_equal(line.get_ydata()[:-1], np.array(expected, dtype=float) - 0.5)
    plt.close(fig)


def _maps(fig) -> list:
    return [ax for ax in fig.axes if ax.get_title().startswith(("queries", "keys"))]


def _scatter(ax, label_start: str) -> np.ndarray:
    found = [c for c in ax.collections if str(c.get_label()).startswith(label_start)]
    return found[0].get_offsets() if found else np.empty((0, 2))


def test_maps_mark_the_frequency_band_and_the_massive_chunks(tiny_profile):
    prof = tiny_profile
    fig = layer_usage_figure(prof, ("q", "k"))
    for ax, tensor in zip(_maps(fig), ("q", "k"), strict=True):
        usage = prof.layer_usage(tensor)
        expected = set()
        for layer in prof.geometry.rotating_layers:  # slow: the half-maximum run around the peak, by hand
            row = usage[layer, : prof.geometry.layer_chunks(layer)]
            top = int(np.nanargmax(row))
            lo, hi = top, top
            while lo > 0 and row[lo - 1] >= 0.5 * row[top]:
                lo -= 1
            while hi < len(row) - 1 and row[hi + 1] >= 0.5 * row[top]:
                hi += 1
            expected |= {(layer, c) for c in range(lo, hi + 1)}
        got = {(int(x), int(y)) for x, y in _scatter(ax, "frequency band")}
        assert got == expected
    plt.close(fig)


def test_per_head_maps_mark_the_massive_chunks():
    import torch

    from ropescope.model.anatomy import inspect_model
    from ropescope.model.geometry import chunk_dims

    model = tiny_model("llama")
    geometry = inspect_model(model).geometry
    head_dim = geometry.head_dim
    with torch.no_grad():  # one massive query chunk (layer 1, head 2, chunk 3) and one key chunk (layer 2)
        model.model.layers[1].self_attn.q_proj.weight[2 * head_dim + chunk_dims(geometry, 1)[3]] *= 40
        model.model.layers[2].self_attn.k_proj.weight[chunk_dims(geometry, 2)[5]] *= 40
    prof = profile(model, DecodingCharTokenizer(), TEXTS)
    massive = prof.massive_values(threshold=5.0)
    assert {("q", 1, 2, 3), ("k", 2, 0, 5)} <= set(
        zip(massive.tensor, massive.layer, massive["head"], massive.chunk, strict=True)
    )
    for layer in range(prof.n_layers):
        fig = head_usage_figure(prof, layer, ("q", "k"))
        for ax, tensor in zip(_maps(fig), ("q", "k"), strict=True):
            rows = massive[(massive.layer == layer) & (massive.tensor == tensor)]
            got = {(int(x), int(y)) for x, y in _scatter(ax, "massive chunk")}
            assert got == set(zip(rows["head"], rows["chunk"], strict=True))
        plt.close(fig)

"""The measured frequency band and below-band p-RoPE (Oka et al., ICLR 2026), perplexity by position,
and context extension past the trained length, each against a slow recomputation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import run_cli
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import PromptError, RopescopeError
from ropescope.model.anatomy import inspect_model
from ropescope.profiling.bands import frequency_band
from ropescope.prope import p_rope
from ropescope.prope.context_extension import context_extension
from ropescope.prope.interventions import below_band_cutoffs, stop_below
from ropescope.prope.perplexity import BELOW_BAND, perplexity, prope_table, token_windows

TEXT = " ".join(TEXTS) * 3


def slow_band(values: np.ndarray, level: float) -> tuple[int, int]:
    """(first, last) position of the longest run of ``values`` that holds the peak and stays at
    ``level`` x peak or more: every candidate run tried."""
    top = int(np.argmax(values))
    best = (top, top)
    for lo in range(top + 1):
        for hi in range(top, len(values)):
            if (values[lo : hi + 1] >= level * values[top]).all() and hi - lo > best[1] - best[0]:
                best = (lo, hi)
    return best


@pytest.mark.parametrize("level", [0.5, 0.8, 1.0])
def test_frequency_band_is_the_longest_run_around_the_peak(level):
    rng = np.random.default_rng(1)
    n = 12
    freqs = {
        0: 1.0 / 10_000 ** (np.arange(n) / n),  # the usual layout: fastest first
        1: rng.permutation(1.0 / 500 ** (np.arange(n) / n)),  # frequencies in no order
        2: np.concatenate([1.0 / 10_000 ** (np.arange(8) / 8), np.zeros(4)]),  # proportional: 4 never rotate
    }
    usage = rng.uniform(0.1, 1.0, size=(4, n))
    usage[0, 5:9] = [3.0, 5.0, 4.0, 1.0]
    usage[2, 8:] = 50.0  # unrotated chunks are not part of any band, however large
    geometry = SimpleNamespace(rotating_layers=(0, 1, 2), frequencies=lambda layer: freqs[layer])  # layer 3: NoPE
    stand_in = SimpleNamespace(layer_usage=lambda tensor: usage, geometry=geometry)
    band = frequency_band(stand_in, "q", level).set_index("layer")
    assert list(band.index) == [0, 1, 2]
    for layer, g in freqs.items():
        rotating = np.nonzero(g > 0)[0]
        order = rotating[np.argsort(-g[rotating])]
        lo, hi = slow_band(usage[layer, order], level)
        chunks = order[lo : hi + 1]
        row = band.loc[layer]
        assert row.band_chunks == len(chunks)
        assert row.peak_chunk == order[np.argmax(usage[layer, order])]
        assert row.slowest_frequency == g[chunks].min() and row.fastest_frequency == g[chunks].max()
        assert row.chunks_below == sum(0 < f < g[chunks].min() for f in g)
        assert row.rotating_chunks == len(rotating)
        assert row.slowest_wavelength == pytest.approx(2 * np.pi / g[chunks].min())
    if level == 0.5:
        assert band.loc[0, "band_chunks"] == 3 and band.loc[0, "peak_chunk"] == 6  # 3, 5, 4 (1 < 2.5)


def test_stop_below_equals_p_rope_at_the_same_cut_and_restores_the_model():
    model = tiny_model("llama")
    ids = torch.tensor([CharTokenizer()(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    g = inspect_model(model).geometry.frequencies(0)
    keep = 3  # p-RoPE at p = keep / chunks keeps the fastest `keep`: the same as stopping below g[keep - 1]
    with torch.no_grad(), p_rope(model, keep / len(g)):
        expected = model(input_ids=ids).logits
    cutoffs = dict.fromkeys(range(3), float(g[keep - 1]))
    with torch.no_grad(), stop_below(model, cutoffs) as reached:
        got = model(input_ids=ids).logits
    assert set(reached) == {0, 1, 2}
    assert torch.equal(got, expected) and not torch.equal(got, before)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)
    with pytest.raises(RopescopeError, match="does not rotate"):
        with stop_below(model, {7: 0.1}):
            pass


def test_prope_table_below_band_row():
    model, tok = tiny_model("llama"), CharTokenizer()
    band = ropescope.profile(model, tok, TEXTS, tensors=("q",)).frequency_band()
    table = prope_table(model, tok, TEXT, [0.5], ["p", BELOW_BAND], context=40, band=band).set_index("variant")
    kept = 1 - band.chunks_below.sum() / band.rotating_chunks.sum()
    assert table.loc[BELOW_BAND, "p"] == pytest.approx(kept)
    with stop_below(model, below_band_cutoffs(band)):
        direct = perplexity(model, tok, TEXT, context=40)["perplexity"]
    assert table.loc[BELOW_BAND, "perplexity"] == pytest.approx(direct, rel=1e-12)
    with pytest.raises(RopescopeError, match="needs the model's measured frequency band"):
        prope_table(model, tok, TEXT, [0.5], [BELOW_BAND], context=40)
    with pytest.raises(RopescopeError, match="no row for rotating layer"):
        prope_table(model, tok, TEXT, [0.5], [BELOW_BAND], context=40, band=band[band.layer != 1])


def test_perplexity_by_position_windows_and_extrapolation():
    model, tok = tiny_model("gemma3"), CharTokenizer()
    text = TEXT * 2
    result = perplexity(model, tok, text, context=48, batch_size=2, windows=3, bucket=10)
    windows = token_windows(tok, text, 48)[:3]
    sums, counts = np.zeros(5), np.zeros(5)
    with torch.no_grad():
        for window in windows:  # one token at a time: its window position decides its bin
            ids = torch.tensor([window])
            logits = model(input_ids=ids).logits[0, :-1].double()
            for position in range(1, len(window)):
                nll = float(torch.nn.functional.cross_entropy(logits[position - 1], ids[0, position]))
                sums[position // 10] += nll
                counts[position // 10] += 1
    assert result["windows"] == 3 and result["tokens"] == counts.sum()
    np.testing.assert_allclose(result["nll_by_position"], sums / counts, rtol=1e-5)
    assert result["nll"] == pytest.approx(sums.sum() / counts.sum(), rel=1e-5)
    assert "nll_by_position" not in perplexity(model, tok, text, context=48, windows=1)
    with pytest.raises(PromptError, match="--extrapolate evaluates past it"):
        token_windows(tok, text, 300, model)
    assert len(token_windows(tok, text, 300, model, extrapolate=True, windows=1)[0]) == 300
    with pytest.raises(PromptError, match="windows must be at least 1"):
        token_windows(tok, text, 40, windows=0)


def test_context_extension_settings_are_the_plain_computations():
    model, tok = tiny_model("llama"), CharTokenizer()  # configured context 256
    text = TEXT * 3
    table, curves = context_extension(model, tok, text, factor=2, types=("linear", "yarn"), windows=1, bucket=64)
    assert list(table.setting) == ["trained", "none", "linear:2", "yarn:2"]
    assert list(table.context) == [256, 512, 512, 512] and list(table.windows) == [2, 1, 1, 1]
    trained = perplexity(model, tok, text, context=256, windows=2, bucket=64)
    assert table.perplexity[0] == pytest.approx(trained["perplexity"], rel=1e-12)
    none = perplexity(model, tok, text, context=512, windows=1, extrapolate=True, bucket=64)
    assert table.perplexity[1] == pytest.approx(none["perplexity"], rel=1e-12)
    with ropescope.rope_scaling(model, "yarn:2"):
        yarn = perplexity(model, tok, text, context=512, windows=1, bucket=64)
    assert table.perplexity[3] == pytest.approx(yarn["perplexity"], rel=1e-12)
    assert table.ratio[3] == pytest.approx(yarn["perplexity"] / trained["perplexity"])
    assert list(curves.start) == list(range(0, 512, 64))
    np.testing.assert_allclose(curves["yarn:2"], yarn["nll_by_position"])
    assert curves["trained"].iloc[4:].isna().all() and curves["trained"].iloc[:4].notna().all()
    assert abs(table.tokens[0] - table.tokens[1]) <= 2  # the same stretch of text, BOS aside
    assert inspect_model(model).context_length == 256  # restored
    with pytest.raises(RopescopeError, match="not supported"):
        context_extension(model, tok, text, types=("dynamic",))


def test_context_extension_figure_draws_every_setting(tmp_path):
    from ropescope.plots.prope import context_extension_figure

    table = pd.DataFrame(
        {
            "setting": ["trained", "none", "yarn:2"],
            "context": [100, 200, 200],
            "windows": [2, 1, 1],
            "tokens": [198, 199, 199],
            "nll": [2.0, 3.0, 2.1],
            "perplexity": [math.exp(2), math.exp(3), math.exp(2.1)],
            "ratio": [1.0, math.exp(1), math.exp(0.1)],
            "seconds": [1.0, 1.0, 1.0],
        }
    )
    curves = pd.DataFrame(
        {
            "start": [0, 50, 100, 150],
            "trained": [2, 2, np.nan, np.nan],
            "none": [2, 2, 4, 4],
            "yarn:2": [2, 2, 2.2, 2.2],
        }
    )
    fig = context_extension_figure(table, curves, "tiny", "stdlib")
    left, right = fig.axes
    assert len(left.get_lines()) == 4  # three settings and the trained length
    assert [t.get_text().split("\n")[0] for t in right.get_xticklabels()] == ["trained", "none", "yarn:2"]
    assert "2x the trained length" in fig._suptitle.get_text()


def test_prope_below_band_on_the_real_gemma(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "prope",
        "gemma-3-270m",
        "--variants",
        "below-band",
        "--p",
        "1",
        "--context",
        "128",
        "--windows",
        "2",
        "--band-prompts",
        "italian",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    band = pd.read_csv(out / "frequency_band.csv")
    table = pd.read_csv(out / "prope.csv").set_index("variant")
    assert len(band) == 18 and (band.band_chunks >= 1).all() and (band.chunks_below >= 0).all()
    assert table.loc["below-band", "p"] == pytest.approx(1 - band.chunks_below.sum() / band.rotating_chunks.sum())
    assert table.loc["rope", "tokens"] == table.loc["below-band", "tokens"] == 254
    assert np.isfinite(table.loc["below-band", "perplexity"])
    assert (out / "prope_perplexity_gemma-3-270m.png").exists()

"""Comparing two profiles: every map cell and correlation equals a slow recomputation; differing
geometries are refused unless the user aligns by chunk index or relative position."""

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError
from ropescope.profiling.compare import compare_profiles


@pytest.fixture(scope="module")
def profiles():
    tokenizer = CharTokenizer()
    gemma = tiny_model("gemma3")
    a = ropescope.profile(gemma, tokenizer, TEXTS[:3], prompt_set="a")
    b = ropescope.profile(gemma, tokenizer, TEXTS[3:], prompt_set="b")
    llama = ropescope.profile(tiny_model("llama"), tokenizer, TEXTS[:3], prompt_set="llama")
    return a, b, llama


def _slow_spearman(x, y):
    """Pearson correlation of average ranks, ranks computed by counting (ties share their mean)."""
    x, y = np.ravel(x), np.ravel(y)

    def ranks(v):
        return np.array([np.sum(v < e) + (np.sum(v == e) + 1) / 2 for e in v])

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def test_maps_and_correlations_equal_a_slow_recomputation(profiles):
    a, b, _ = profiles
    result = a.compare(b)
    for tensor in ("q", "k", "v"):
        ua, ub = a.layer_usage(tensor), b.layer_usage(tensor)
        np.testing.assert_allclose(result.grid(tensor, "a"), ua)
        np.testing.assert_allclose(result.grid(tensor, "difference"), ub - ua)
        np.testing.assert_allclose(result.grid(tensor, "ratio"), ub / ua)
        part = result.correlations[result.correlations.tensor == tensor]
        for layer in range(a.n_layers):
            assert part.spearman.iloc[layer] == pytest.approx(_slow_spearman(ua[layer], ub[layer]))
        assert result.overall[tensor] == pytest.approx(_slow_spearman(ua, ub))
    assert compare_profiles(a, a).overall["q"] == pytest.approx(1.0)
    assert "by geometry" in repr(result)


def test_differing_geometry_is_refused_unless_aligned(profiles):
    a, _, llama = profiles
    with pytest.raises(RopescopeError, match="differ in RoPE geometry .*by='relative'"):
        a.compare(llama)
    with pytest.raises(RopescopeError, match="by must be one of"):
        a.compare(llama, by="nearest")
    by_chunk = a.compare(llama, by="chunk")  # 3 layers, 8 chunks each; frequencies differ
    assert len(by_chunk.maps["q"]) == a.n_layers * a.geometry.n_chunks


def test_relative_alignment_averages_onto_the_coarser_grid(profiles):
    a, _, llama = profiles
    result = a.compare(llama, by="relative")
    ua = a.layer_usage("k")
    rows = np.array_split(np.arange(ua.shape[0]), 3)
    cols = np.array_split(np.arange(ua.shape[1]), 8)
    expected = np.array([[ua[np.ix_(r, c)].mean() for c in cols] for r in rows])
    np.testing.assert_allclose(result.grid("k", "a"), expected)


def test_compare_command(profiles, tmp_path):
    a, b, llama = profiles
    for name, prof in (("a", a), ("b", b), ("llama", llama)):
        prof.save(tmp_path / f"{name}.safetensors")
    out = tmp_path / "cmp"
    result = run_cli("compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "q: Spearman over all (layer, chunk) cells" in result.stdout
    assert {"compare_maps.csv", "compare_spearman.csv", "compare.png", "compare.pdf"} <= {p.name for p in out.iterdir()}
    refused = run_cli(
        "compare", str(tmp_path / "a.safetensors"), str(tmp_path / "llama.safetensors"), "--out", str(tmp_path / "x")
    )
    assert_one_line_error(refused, "differ in RoPE geometry")
    assert not (tmp_path / "x").exists()

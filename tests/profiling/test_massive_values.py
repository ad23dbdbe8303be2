"""Massive values (Jin et al., ICML 2025) from a profile's statistics: each chunk's root-mean-square
norm equals a slow recomputation from the weights, and the chunks flagged are exactly those whose
rms exceeds five times their head's mean, found in a model where one query chunk was made massive."""

import numpy as np
import pytest
import torch
from reference import reference_stats
from tiny import FAMILIES, TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.model.geometry import chunk_pair_indices
from ropescope.profiling.massive import rms_norms
from ropescope.profiling.run import tokenize_prompts


def _with_a_massive_chunk(family: str, layer: int, head: int, chunk: int, factor: float = 40.0):
    """A tiny model whose query ``chunk`` of ``head`` in ``layer`` is ``factor`` times larger (its two
    rows of q_proj scaled: the pair the model rotates together)."""
    model = tiny_model(family)
    geometry = ropescope.read_geometry(model)
    attention = [m for _, m in model.named_modules() if "Attention" in type(m).__name__ and hasattr(m, "layer_idx")]
    first, second = (int(i[chunk]) for i in chunk_pair_indices(geometry.rotary_dim, geometry.layout))
    head_dim = geometry.head_dim
    with torch.no_grad():
        weight = attention[layer].q_proj.weight
        for dim in (first, second):
            weight[head * head_dim + dim] *= factor
    return model


@pytest.mark.parametrize("family", ["llama", "cohere"])  # halves and interleaved pairs
def test_rms_norms_equal_a_slow_recomputation(family):
    model = tiny_model(family)
    tokenizer = CharTokenizer()
    _, _, layout, rotary_dim = FAMILIES[family]
    prof = ropescope.profile(model, tokenizer, TEXTS, batch_size=2)
    rows, _ = tokenize_prompts(tokenizer, TEXTS, 10_000)
    ref = reference_stats(model, rows, rotary_dim, layout, tokenizer.bos_token_id)
    for tensor in "qk":
        np.testing.assert_allclose(rms_norms(prof.stats[tensor]), ref[tensor]["rms"], rtol=1e-5, atol=1e-6)


def test_the_massive_chunk_and_only_it_is_flagged():
    layer, head, chunk = 1, 2, 3
    model = _with_a_massive_chunk("llama", layer, head, chunk)
    prof = ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=2)
    table = prof.massive_values()
    flagged = list(table[["tensor", "layer", "head", "chunk"]].itertuples(index=False, name=None))
    assert flagged == [("q", layer, head, chunk)]
    row = table.iloc[0]  # a Series: row["head"], not row.head (a method)
    rms = rms_norms(prof.stats["q"])[layer, head]
    assert row.ratio == pytest.approx(rms[chunk] / rms.mean()) and row.ratio > 5
    assert row.frequency == pytest.approx(prof.geometry.frequencies(layer)[chunk])
    assert row.wavelength == pytest.approx(2 * np.pi / row.frequency)
    assert row.slow == (chunk >= prof.geometry.semantic_boundary(layer, prof.meta["context_length"]))
    concentration = prof.concentration("q")
    assert concentration[layer, head] == pytest.approx(row.ratio)
    assert (np.delete(concentration.ravel(), layer * concentration.shape[1] + head) < 5).all()
    # a plain model has none; a threshold just above the chunk's ratio leaves it out
    assert ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS).massive_values().empty
    assert prof.massive_values(threshold=row.ratio * 1.001).empty
    with pytest.raises(ValueError, match="threshold must be a number above 1"):
        prof.massive_values(threshold=float("nan"))


TEXT = " ".join(TEXTS) * 3


def _attention_modules(model):
    return [m for _, m in model.named_modules() if "Attention" in type(m).__name__ and hasattr(m, "layer_idx")]


def test_ablating_the_massive_chunk_equals_editing_the_projection():
    """``zero`` equals zeroing the chunk's two rows of q_proj (no hook at all); ``running mean``
    equals replacing the chunk in q_proj's output by its mean over tokens so far (a plain forward
    hook on the projection; llama has no QK-norm, so q_proj's output is the pre-RoPE q); the control
    zeroes as many other chunks of the same head, which the same weight edit reproduces."""
    from ropescope.prope.massive_ablation import massive_ablation
    from ropescope.prope.perplexity import perplexity

    layer, head, chunk = 1, 2, 3
    model = _with_a_massive_chunk("llama", layer, head, chunk)
    massive = ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=2).massive_values()
    table = massive_ablation(model, CharTokenizer(), TEXT, massive, context=40, draws=2)
    assert list(table.condition) == ["none", "zero", "running mean", "zero control", "zero control"]
    by = {(r.condition, r.draw): r.perplexity for r in table.itertuples()}
    assert by[("none", 0)] == pytest.approx(perplexity(model, CharTokenizer(), TEXT, context=40)["perplexity"])

    geometry = ropescope.read_geometry(model)
    first, second = (np.asarray(i) for i in chunk_pair_indices(geometry.rotary_dim, geometry.layout))
    projection = _attention_modules(model)[layer].q_proj

    def rows_of(chunks):
        return [head * geometry.head_dim + int(d) for c in chunks for d in (first[c], second[c])]

    def with_rows_zeroed(rows):
        saved = projection.weight.data.clone()
        projection.weight.data[rows] = 0
        try:
            return perplexity(model, CharTokenizer(), TEXT, context=40)["perplexity"]
        finally:
            projection.weight.data = saved

    assert by[("zero", 0)] == pytest.approx(with_rows_zeroed(rows_of([chunk])), rel=1e-6)

    def running_mean(module, args, output):
        out = output.clone()
        cols = rows_of([chunk])
        part = out[..., cols].float()
        counts = torch.arange(1, part.shape[1] + 1, dtype=torch.float32)[None, :, None]
        out[..., cols] = part.cumsum(dim=1) / counts
        return out

    handle = projection.register_forward_hook(running_mean)
    try:
        expected = perplexity(model, CharTokenizer(), TEXT, context=40)["perplexity"]
    finally:
        handle.remove()
    assert by[("running mean", 0)] == pytest.approx(expected, rel=1e-6)

    # the control: the same draw of one other chunk, redone by the weight edit
    rng = np.random.default_rng(0)
    others = np.setdiff1d(np.arange(geometry.n_chunks), [chunk])
    control = int(rng.choice(others, size=1, replace=False)[0])
    assert control != chunk
    assert by[("zero control", 1)] == pytest.approx(with_rows_zeroed(rows_of([control])), rel=1e-6)
    assert table.change.iloc[0] == 1.0


def test_ablation_refuses_a_table_of_another_model():
    from ropescope.errors import RopescopeError
    from ropescope.prope.massive_ablation import massive_ablation

    model = tiny_model("llama")
    bad = ropescope.profile(model, CharTokenizer(), TEXTS).massive_values()
    with pytest.raises(RopescopeError, match="no massive chunk"):
        massive_ablation(model, CharTokenizer(), TEXT, bad)
    wrong = bad.reindex([0]).assign(tensor="q", layer=7, head=0, chunk=0)
    with pytest.raises(RopescopeError, match="is not in this model"):
        massive_ablation(model, CharTokenizer(), TEXT, wrong)

"""The profile equals a slow recomputation from weights and hidden states, on tiny models of
several families (halves and interleaved layouts, GQA, QK-norm, partial rotary, two thetas)."""

import numpy as np
import pytest
import torch
from reference import reference_stats
from tiny import FAMILIES, TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.profiling.run import tokenize_prompts


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("include_bos", [False, True])
def test_profile_equals_slow_recomputation(family, include_bos):
    model = tiny_model(family)
    tokenizer = CharTokenizer()
    _, _, layout, rotary_dim = FAMILIES[family]
    prof = ropescope.profile(model, tokenizer, TEXTS, batch_size=3, include_bos=include_bos)
    rows, _ = tokenize_prompts(tokenizer, TEXTS, 10_000)
    ref = reference_stats(model, rows, rotary_dim, layout, tokenizer.bos_token_id, include_bos)

    assert prof.geometry.layout == layout
    assert prof.geometry.rotary_dim == rotary_dim
    for tensor in "qkv":
        stats = prof.stats[tensor]
        np.testing.assert_array_equal(stats.count.numpy(), ref[tensor]["count"])
        np.testing.assert_allclose(stats.mean.numpy(), ref[tensor]["mean"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats.std.numpy(), ref[tensor]["std"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats.max.numpy(), ref[tensor]["max"], rtol=1e-5, atol=1e-6)
    expected_tokens = sum(len(r) - (0 if include_bos else 1) for r in rows)
    assert prof.n_tokens == expected_tokens


def test_padding_and_batch_size_do_not_change_the_profile():
    model = tiny_model("llama")
    one = ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=1)
    many = ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=5)
    for tensor in "qkv":
        np.testing.assert_allclose(one.stats[tensor].mean, many.stats[tensor].mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.stats[tensor].max, many.stats[tensor].max, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gemma3", "cohere", "phi"])
def test_pre_and_post_rope_chunk_norms_agree(family, monkeypatch):
    """RoPE only rotates chunks, so chunk norms taken after rotation equal those taken before."""
    model = tiny_model(family)
    geometry = ropescope.read_geometry(model)
    sites = ropescope.model.families.attention_sites(model)
    code = sites[0].code_module
    seen = []
    original = code.apply_rotary_pos_emb

    def spy(q, k, cos, sin, *args, **kwargs):
        q_rot, k_rot = original(q, k, cos, sin, *args, **kwargs)
        seen.append((q, k, q_rot, k_rot))
        return q_rot, k_rot

    monkeypatch.setattr(code, "apply_rotary_pos_emb", spy)
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])
    with torch.no_grad():
        model(input_ids=ids)
    r = geometry.rotary_dim
    assert len(seen) == geometry.n_layers
    for q, k, q_rot, k_rot in seen:
        for pre, post in ((q, q_rot), (k, k_rot)):
            before = ropescope.model.geometry.chunk_norms(pre[..., :r], geometry.layout)
            after = ropescope.model.geometry.chunk_norms(post[..., :r], geometry.layout)
            torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
            # and the pairing matters: the other layout's "chunks" are not preserved
            wrong = "interleaved" if geometry.layout == "halves" else "halves"
            assert not torch.allclose(
                ropescope.model.geometry.chunk_norms(post[..., :r], wrong),
                ropescope.model.geometry.chunk_norms(pre[..., :r], wrong),
                rtol=1e-3,
                atol=1e-3,
            )


def test_gemma3_geometry_is_read_per_layer_type():
    model = tiny_model("gemma3")
    geometry = ropescope.read_geometry(model)
    rotary = model.model.rotary_emb
    for lr in geometry.layers:
        buffer = getattr(rotary, f"{lr.layer_type}_inv_freq")
        np.testing.assert_array_equal(lr.inv_freq, buffer.double().numpy())
    assert [lr.theta for lr in geometry.layers] == [10_000.0, 1_000_000.0, 10_000.0]
    assert [lr.window for lr in geometry.layers] == [6, None, 6]
    assert not np.allclose(geometry.layers[0].inv_freq, geometry.layers[1].inv_freq)


def test_rotate_matches_a_slow_rotation_for_both_layouts():
    x = torch.randn(3, 12, dtype=torch.float64)
    inv_freq = torch.tensor([1.0, 0.3, 0.01, 0.0], dtype=torch.float64)
    positions = torch.arange(3)
    for layout in ("halves", "interleaved"):
        out = ropescope.model.geometry.rotate(x[:, :8], positions, inv_freq, layout).numpy()
        first, second = ropescope.model.geometry.chunk_pair_indices(8, layout)
        for m in range(3):
            for c in range(4):
                angle = m * float(inv_freq[c])
                a, b = float(x[m, first[c]]), float(x[m, second[c]])
                assert out[m, first[c]] == pytest.approx(a * np.cos(angle) - b * np.sin(angle))
                assert out[m, second[c]] == pytest.approx(b * np.cos(angle) + a * np.sin(angle))


def test_values_narrower_than_the_rotary_dims_are_left_out_not_cut_otherwise():
    """MiMo-V2-Flash configured with full rotary 32-dim heads and 16-dim values: the values have no
    pairs like the query's and key's, so their statistics are left out (NaN) with a warning, and the
    query and key statistics are still there."""
    import warnings

    import numpy as np

    import ropescope
    from ropescope.survey import TEXTS, CharTokenizer, tiny_model

    full = {"rope_type": "default", "partial_rotary_factor": 1.0}
    rope = {"full_attention": {**full, "rope_theta": 5e6}, "sliding_attention": {**full, "rope_theta": 1e4}}
    model = tiny_model("mimo_v2_flash", {"head_dim": 32, "v_head_dim": 16, "rope_parameters": rope})
    assert ropescope.inspect_model(model).geometry.layer_rotary_dim(0) == 32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = ropescope.profile(model, CharTokenizer(), list(TEXTS))
    assert any("values have 16 dims per head, fewer than the 32" in str(w.message) for w in caught)
    assert not prof.stats["v"].count.numpy().any()  # counted nowhere: read as NaN
    frame = prof.frame()
    assert frame[frame.tensor == "v"].mean_norm.isna().all()
    assert prof.stats["q"].count.numpy().all() and np.isfinite(prof.stats["q"].mean.numpy()).all()

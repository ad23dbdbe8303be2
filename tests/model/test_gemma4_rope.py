"""Gemma 4's way of applying RoPE: q and k rotated in separate calls on [batch, tokens, heads, dims],
proportional RoPE on global layers (a quarter of the pairs rotate, at theta^(-2i/head_dim), the rest
not at all), heads of different sizes and KV-head counts per layer, keys used as values (K = V) and
layers reusing earlier layers' keys and values (KV sharing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from hub_stand_in import char_tokenizer

import ropescope
import ropescope.errors
import ropescope.profiling.result
from ropescope.survey import TEXTS, VARIANTS, CharTokenizer, tiny_model

ONE_SIZE = VARIANTS["gemma4_text (one head size)"][1]


def _gemma4(**overrides):
    return tiny_model("gemma4_text", {**ONE_SIZE, "head_dim": 64, **overrides})


def test_global_layers_rotate_a_quarter_of_their_pairs():
    geometry = ropescope.inspect_model(_gemma4()).geometry
    sliding, full = geometry.layers[0], geometry.layers[1]
    assert (sliding.layer_type, full.layer_type) == ("sliding_attention", "full_attention")
    i = np.arange(32)
    assert np.allclose(sliding.inv_freq, 10_000.0 ** (-2 * i / 64), rtol=1e-6)
    expected = np.where(i < 8, 1_000_000.0 ** (-2 * i / 64), 0.0)  # 1/4 of 32 pairs; head dim as denominator
    assert np.allclose(full.inv_freq, expected, rtol=1e-6, atol=0)
    assert geometry.semantic_boundary(1, 10) <= 8  # the 24 unrotated pairs are on the semantic side


def test_profile_and_heads_are_exact_on_separate_rope_calls():
    model = _gemma4()
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    assert (prof.stats["q"].count > 0).all() and (prof.stats["k"].count > 0).all()
    report = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=1)  # gated against eager
    assert len(report.table) == 2 * 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_interventions_reach_separate_rope_calls(dtype):
    model = _gemma4().to(dtype)
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=ids, use_cache=False).logits
        with ropescope.p_rope(model, 1.0):
            assert torch.equal(base, model(input_ids=ids, use_cache=False).logits)
        with ropescope.p_rope(model, 0.25) as reached:
            changed = model(input_ids=ids, use_cache=False).logits
        assert sorted(reached) == [0, 1] and not torch.equal(base, changed)
        with ropescope.ablate_chunks(model, {(1, 0): [0, 1]}, tensors=("k",)):
            assert not torch.equal(base, model(input_ids=ids, use_cache=False).logits)
        assert torch.equal(base, model(input_ids=ids, use_cache=False).logits)


GEMMA4_26B_LIKE = VARIANTS["gemma4_text (K = V, KV sharing)"][1]


def test_per_layer_head_sizes_kv_heads_k_eq_v_and_kv_sharing_are_read_from_the_model():
    """Gemma 4 26B/31B-like: 16-dim sliding heads with 2 KV heads, 32-dim global heads with 1 KV head
    whose keys are the values, and layers 4, 5 reusing the keys and values of layers 2, 3."""
    model = tiny_model("gemma4_text", GEMMA4_26B_LIKE)
    anatomy = ropescope.inspect_model(model)
    geometry = anatomy.geometry
    assert geometry.ragged and (geometry.head_dim, geometry.n_chunks) == (32, 16)
    assert [geometry.layer_head_dim(i) for i in range(6)] == [16, 32] * 3
    assert [geometry.layer_chunks(i) for i in range(6)] == [8, 16] * 3
    assert [anatomy.layer_kv_heads(i) for i in range(6)] == [2, 1] * 3
    assert [lr.kv_source for lr in geometry.layers] == [None, None, None, None, 2, 3]
    i = np.arange(16)
    assert np.allclose(geometry.frequencies(3), np.where(i < 4, 1e6 ** (-2 * i / 32), 0.0), rtol=1e-6, atol=0)
    assert type(ropescope.profiling.result.RopeGeometry.from_dict(geometry.to_dict())) is type(geometry)
    assert ropescope.profiling.result.RopeGeometry.from_dict(geometry.to_dict()).to_dict() == geometry.to_dict()


def test_ragged_profile_is_nan_exactly_where_a_layer_has_no_such_head_or_chunk(tmp_path):
    model = tiny_model("gemma4_text", GEMMA4_26B_LIKE)
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    q, k, v = (prof.stats[t].mean.numpy() for t in "qkv")
    assert q.shape == (6, 4, 16) and k.shape == v.shape == (6, 2, 16)
    assert np.isfinite(q[1]).all() and np.isnan(q[0, :, 8:]).all() and np.isfinite(q[0, :, :8]).all()
    assert np.isfinite(k[0, :, :8]).all() and np.isnan(k[1, 1:]).all() and np.isfinite(k[1, :1]).all()
    assert np.isnan(k[4:]).all() and np.isnan(v[4:]).all()  # keys and values of layers 2, 3: counted there
    assert (prof.stats["k"].count.numpy()[4:] == 0).all() and (prof.stats["q"].count.numpy() > 0).all()
    frame = prof.frame()
    assert frame.mean_norm.notna().all()  # the tidy table has rows for what exists only
    assert len(frame[(frame.tensor == "q") & (frame.layer == 0)]) == 4 * 8
    assert len(frame[(frame.tensor == "k") & (frame.layer == 4)]) == 0
    assert prof.head_usage(0, "q").shape == (4, 8) and prof.head_usage(4, "k").shape == (0, 8)
    path = prof.save(tmp_path / "ragged.safetensors")
    loaded = ropescope.load_profile(path)
    for t in "qkv":
        assert np.array_equal(loaded.stats[t].mean.numpy(), prof.stats[t].mean.numpy(), equal_nan=True)
    merged = prof.merge(ropescope.profile(model, CharTokenizer(), ["a third prompt"]))
    assert np.array_equal(np.isnan(merged.stats["k"].mean.numpy()), np.isnan(k))


def test_a_profile_with_values_where_its_geometry_has_none_is_refused(tmp_path):
    model = tiny_model("gemma4_text", GEMMA4_26B_LIKE)
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    prof.stats["q"].mean = prof.stats["q"].mean.clone()
    prof.stats["q"].mean[0, 0, 12] = 1.0  # layer 0's heads have 8 chunks
    path = prof.save(tmp_path / "forged.safetensors")
    with pytest.raises(ropescope.errors.ProfileFileError, match="heads or chunks its geometry does not have"):
        ropescope.load_profile(path)


def test_shared_layers_score_against_their_source_keys_and_ablation_says_so():
    model = tiny_model("gemma4_text", GEMMA4_26B_LIKE)
    report = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=1)  # gated against eager
    assert sorted(set(report.table.layer)) == list(range(6))
    sliding = report.table[report.table.layer == 0]
    assert all(int(c) < 8 for chunks in sliding.attr_top_chunks for c in chunks.split())
    assert (report.table[report.table.layer == 3].kv_head == 0).all()  # one KV head on global layers
    with pytest.raises(ropescope.errors.RopescopeError, match="reuses the keys of layer 2"):
        with ropescope.ablate_chunks(model, {(4, 0): [0]}):
            pass
    with pytest.raises(ropescope.errors.RopescopeError, match=r"chunks of layer 0 must be in 0\.\.7"):
        with ropescope.ablate_chunks(model, {(0, 0): [8]}, tensors=("q",)):
            pass


def test_gemma4_checkpoint_profiles_from_the_cli_with_its_figures(tmp_path):
    directory = tmp_path / "gemma4"
    tiny_model("gemma4_text", GEMMA4_26B_LIKE).save_pretrained(directory)
    char_tokenizer(directory)
    out = tmp_path / "run"
    result = run_cli("profile", str(directory), "--out", str(out), "--max-tokens", "32")
    assert result.returncode == 0, result.stderr
    loaded = ropescope.load_profile(out)
    assert loaded.geometry.ragged and loaded.geometry.layers[5].kv_source == 3
    assert any(p.name.startswith("fig03") and p.suffix == ".png" for p in out.iterdir())


def test_report_of_a_ragged_scan_names_each_layers_chunks_and_leaves_missing_ones_empty(tmp_path):
    from ropescope.report.content import report_data
    from ropescope.report.page import write_report

    model = tiny_model("gemma4_text", GEMMA4_26B_LIKE)
    report = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=1)
    data = report_data(report.profile, heads=report.table, threshold=report.threshold)
    layers = data["geometry"]["layers"]
    assert [lr["chunks"] for lr in layers] == [8, 16] * 3 and [lr["head_dim"] for lr in layers] == [16, 32] * 3
    q_usage = data["usage"]["q"]
    assert q_usage[0][8:] == [None] * 8 and None not in q_usage[0][:8] and None not in q_usage[1]
    assert data["head_usage"]["k"][4] == [[None] * 16] * 2  # layer 4 reuses layer 2's keys
    page = write_report(data, tmp_path / "report.html").read_text(encoding="utf-8")  # JSON refuses NaN
    assert '"chunks":8' in page and "null" in page

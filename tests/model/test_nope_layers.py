"""NoPE layers (SmolLM3, Cohere 2) are found by watching the model, profiled from their projections,
drawn and labelled, never refused; interventions reach them where they mean something."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import torch

import ropescope
from ropescope.model.geometry import RopeGeometry
from ropescope.plots.usage import layer_usage_figure
from ropescope.survey import TEXTS, VARIANTS, CharTokenizer, tiny_model


def _smollm3():
    model_type, overrides = VARIANTS["smollm3 (NoPE layer 3)"]
    return tiny_model(model_type, overrides)


def test_nope_layers_are_found_by_running_the_model():
    geometry = ropescope.inspect_model(_smollm3()).geometry
    assert geometry.nope_layers == (3,)
    assert not geometry.layers[3].rope and np.all(geometry.frequencies(3) == 0)
    assert all(np.all(geometry.frequencies(i) > 0) for i in range(3))
    assert "NoPE layers 3" in repr(geometry)
    model_type, overrides = VARIANTS["cohere2 (NoPE global layer)"]
    assert ropescope.inspect_model(tiny_model(model_type, overrides)).geometry.nope_layers == (3,)
    assert ropescope.inspect_model(tiny_model("llama")).geometry.nope_layers == ()


def test_geometry_keeps_nope_layers_and_reads_older_files():
    geometry = ropescope.inspect_model(_smollm3()).geometry
    again = RopeGeometry.from_dict(geometry.to_dict())
    assert again.nope_layers == (3,)
    old = geometry.to_dict()
    for layer in old["layers"]:
        del layer["rope"]  # saved before NoPE layers were known
    assert RopeGeometry.from_dict(old).nope_layers == ()


def test_nope_layer_statistics_are_its_projections():
    model = _smollm3()
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2, include_bos=True)
    attention = model.model.layers[3].self_attn
    norms = {"q": [], "k": []}
    for text in TEXTS:
        ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
        kept = {}
        handles = [
            getattr(attention, f"{n}_proj").register_forward_hook(
                lambda m, a, o, n=n, kept=kept: kept.__setitem__(n, o.double())
            )
            for n in ("q", "k")
        ]
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
        for h in handles:
            h.remove()
        for name in ("q", "k"):
            x = kept[name][0].reshape(ids.shape[1], -1, 16).numpy()  # [S, H, 16], halves layout
            norms[name].append(np.hypot(x[..., :8], x[..., 8:]))
    for name in ("q", "k"):
        slow = np.concatenate(norms[name]).mean(0)
        assert np.allclose(prof.stats[name].mean.numpy()[3], slow, rtol=1e-5, atol=1e-6)


def test_usage_figure_labels_nope_layers():
    prof = ropescope.profile(_smollm3(), CharTokenizer(), list(TEXTS), batch_size=2)
    fig = layer_usage_figure(prof)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("NoPE layer") == 2  # one column in the query map, one in the key map
    matplotlib.pyplot.close(fig)


def test_interventions_on_a_model_with_nope_layers():
    model = _smollm3()
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        base = model(input_ids=ids, use_cache=False).logits
        with ropescope.p_rope(model, 0.5) as reached:
            changed = model(input_ids=ids, use_cache=False).logits
        assert sorted(reached) == [0, 1, 2]  # the NoPE layer has no rotation to change
        assert not torch.equal(base, changed)
        with ropescope.ablate_chunks(model, {(3, 0): [0, 1, 2]}):
            ablated = model(input_ids=ids, use_cache=False).logits
        assert not torch.equal(base, ablated)  # zeroing q chunks of a NoPE layer reaches its attention
        assert torch.equal(base, model(input_ids=ids, use_cache=False).logits)


def test_profiles_keep_nope_and_hybrid_layers_and_version_3_files_load(tmp_path):
    import copy
    import json

    from ropescope import files
    from ropescope.profiling import result as profile_module

    prof = ropescope.profile(_smollm3(), CharTokenizer(), list(TEXTS), batch_size=2)
    prof.save(tmp_path / "now.safetensors")
    assert ropescope.load_profile(tmp_path / "now.safetensors").geometry.nope_layers == (3,)
    arrays = {}
    for tensor in profile_module.TENSORS:
        arrays.update(prof.stats[tensor].to_arrays(tensor))
    meta = copy.deepcopy(prof.meta)
    arrays["prompt_hashes"] = np.array([int(h, 16) for h in meta.pop("prompt_hashes")], dtype=np.uint64)
    for layer in meta["geometry"]["layers"]:
        del layer["rope"], layer["attention"]
    files.write_checked(tmp_path / "v3.safetensors", arrays, profile_module.FORMAT, 3, json.dumps(meta))
    old = ropescope.load_profile(tmp_path / "v3.safetensors")
    assert old.geometry.nope_layers == () and np.array_equal(old.stats["q"].mean, prof.stats["q"].mean)


def test_hybrid_models_profile_attention_layers_in_the_models_numbering():
    model = tiny_model("qwen3_next")  # layer 0 linear attention (Gated DeltaNet), layer 1 full attention
    geometry = ropescope.inspect_model(model).geometry
    assert geometry.attention_layers == (1,) and geometry.layers[0].layer_type == "linear_attention"
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    assert prof.stats["q"].count[0] == 0 and prof.stats["q"].count[1] > 0
    table = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=2).table
    assert set(table["layer"]) == {1}


def test_nope_layers_with_qk_norm_are_read_after_the_norm_in_either_layout():
    from ropescope.model.nope import nope_layout

    for family, layout in (("exaone4", "bhsd"), ("afmoe", "bshd")):  # norm after / before the head transpose
        model = tiny_model(family)  # layer 0 sliding with RoPE, layer 1 global without
        geometry = ropescope.inspect_model(model).geometry
        assert geometry.nope_layers == (1,) and geometry.layers[1].window is None
        assert nope_layout(model, 1) == {"q": layout, "k": layout}
        attention = model.model.layers[1].self_attn
        kept = {}
        handle = attention.q_norm.register_forward_hook(lambda m, a, o, kept=kept: kept.__setitem__("q", o.double()))
        ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
        prof = ropescope.profile(model, CharTokenizer(), [TEXTS[1]], include_bos=True)
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
        handle.remove()
        q = kept["q"][0]
        q = q.transpose(0, 1) if layout == "bhsd" else q  # -> [S, H, D]
        d = q.shape[-1] // 2
        slow = torch.hypot(q[..., :d], q[..., d:]).mean(0).numpy()
        assert np.allclose(prof.stats["q"].mean.numpy()[1], slow, rtol=1e-5, atol=1e-6), family


def test_mla_nope_layers_count_their_query_control_and_no_shared_key(tmp_path):
    """Mistral Large 4's NoPE layers are MLA layers that rotate nothing: q's control is read where its
    RoPE layers rotate (the last qk_rope_head_dim dims of each head), it has no shared RoPE key (k
    counts nothing and the figures say why), its values are counted, and head scores take its whole
    per-head q (scaled by position as the model scales it) and k."""
    from ropescope.plots.usage import head_usage_figure

    model = tiny_model("mistral_large4")
    geometry = ropescope.inspect_model(model).geometry
    assert geometry.nope_layers == (1,)
    # the geometry says so (and the saved profile keeps it): layer 1 has no key heads to measure
    assert [lr.shared_key for lr in geometry.layers] == [True, False]
    assert [h for h, _ in geometry.layer_sizes(1, "k")] == [1, 0] and "no shared RoPE key" in repr(geometry)
    prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
    q, k, v = (prof.stats[t].count.numpy() for t in "qkv")
    assert q[1] == q[0] > 0 and k[0] > 0 and k[1] == 0 and v[1] == v[0] > 0
    assert np.isnan(prof.stats["k"].mean.numpy()[1]).all() and prof.head_usage(1, "k").shape[0] == 0
    saved = tmp_path / "mla.safetensors"
    prof.save(saved)
    assert [lr.shared_key for lr in ropescope.load_profile(saved).geometry.layers] == [True, False]
    texts = [t.get_text() for ax in head_usage_figure(prof, 1).axes for t in ax.texts]
    assert any("no shared RoPE key" in t for t in texts), texts
    labels = [p.get_label() for ax in layer_usage_figure(prof).axes for p in ax.patches]
    assert "no shared RoPE key (MLA layer without RoPE)" in labels
    report = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=2)
    assert set(report.table["layer"]) == {0, 1}
    matplotlib.pyplot.close("all")

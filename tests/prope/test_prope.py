"""p-RoPE: the paper's semantics, exact at p = 1, no rotation at p = 0, and interventions that
restore the model bit for bit."""

import numpy as np
import pytest
import torch
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError
from ropescope.prope import ablate_chunks, apply_p_rope, p_rope, p_rope_frequencies, paper_inv_freq


def jax_apply_p_rope(inputs, positions, head_dim, max_wavelength, rope_percentage):
    """A direct NumPy transcription of the paper's JAX ``apply_p_rope`` (Appendix D)."""
    rope_angles = int(rope_percentage * head_dim // 2)
    nope_angles = head_dim // 2 - rope_angles
    fraction = 2.0 * np.arange(0, rope_angles) / head_dim
    timescale = np.pad(max_wavelength**fraction, (0, nope_angles), mode="constant", constant_values=(0, np.inf))
    sinusoid_inp = positions[..., np.newaxis] / timescale[np.newaxis, np.newaxis, :]
    sinusoid_inp = sinusoid_inp[..., np.newaxis, :]
    sin, cos = np.sin(sinusoid_inp), np.cos(sinusoid_inp)
    first_half, second_half = np.split(inputs, 2, axis=-1)
    first_part = first_half * cos - second_half * sin
    second_part = second_half * cos + first_half * sin
    return np.concatenate([first_part, second_part], axis=-1)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("head_dim, theta", [(256, 10_000.0), (64, 500_000.0), (128, 10_000.0)])
def test_apply_p_rope_matches_the_paper_pseudocode(p, head_dim, theta):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2, 7, 3, head_dim))  # [B, L, heads, head_dim], as in the paper
    positions = np.tile(np.arange(7.0), (2, 1))  # [B, L]
    expected = jax_apply_p_rope(inputs, positions, head_dim, theta, p)
    x = torch.tensor(inputs).transpose(1, 2)  # ropescope: [B, heads, L, head_dim]
    got = apply_p_rope(x, torch.tensor(positions)[:, None, :], paper_inv_freq(head_dim, theta), p)
    np.testing.assert_allclose(got.transpose(1, 2).numpy(), expected, rtol=1e-9, atol=1e-9)


def test_variants_keep_and_drop_the_right_chunks():
    g = paper_inv_freq(16, 10_000.0)  # 8 chunks
    assert np.array_equal(p_rope_frequencies(g, 0.75, "p"), np.r_[g[:6], 0, 0])
    assert np.array_equal(p_rope_frequencies(g, 0.75, "reversed"), np.r_[0, 0, g[2:]])
    partial = p_rope_frequencies(g, 0.5, "partial")
    np.testing.assert_allclose(partial[:4], 10_000.0 ** (-np.arange(4) / 4))  # a rotary dim of 8
    assert np.all(partial[4:] == 0)
    assert np.all(p_rope_frequencies(g, 0.0, "p") == 0)
    assert np.array_equal(p_rope_frequencies(g, 1.0, "partial"), g)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(RopescopeError, match="p must be a fraction"):
            p_rope_frequencies(g, bad)
    with pytest.raises(RopescopeError, match="unknown p-RoPE variant"):
        p_rope_frequencies(g, 0.5, "sideways")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("family", ["gemma3", "llama", "qwen3", "cohere", "phi"])
def test_p_equal_one_reproduces_the_model_exactly_and_restores_it(family):
    model = tiny_model(family)
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])
    before = _logits(model, ids)
    for variant in ("p", "reversed", "partial"):
        with p_rope(model, 1.0, variant):
            torch.testing.assert_close(_logits(model, ids), before, rtol=0, atol=0)
    with p_rope(model, 0.5):
        changed = _logits(model, ids)
    assert not torch.allclose(changed, before)
    assert torch.equal(_logits(model, ids), before)  # restored bit for bit


def test_p_zero_is_no_rotation():
    model = tiny_model("llama")
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with p_rope(model, 0.0):
        nope = _logits(model, ids)
    with torch.no_grad():
        model.model.rotary_emb.inv_freq.zero_()
        expected = _logits(model, ids)
    torch.testing.assert_close(nope, expected, rtol=0, atol=0)


def test_p_rope_on_chosen_layers_of_gemma3_only_changes_those_layers():
    model = tiny_model("gemma3")
    seen = {}

    def on_qk(layer, q_rot, k_rot, mask):
        seen.setdefault(layer, []).append(q_rot.clone())

    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])
    with ropescope.capture(model, on_qk=on_qk, tensors=(), verify_geometry=False), torch.no_grad():
        model(input_ids=ids)
    with p_rope(model, 0.25, layers=[1]), ropescope.capture(model, on_qk=on_qk, tensors=(), verify_geometry=False):
        with torch.no_grad():
            model(input_ids=ids)
    assert torch.equal(seen[0][0], seen[0][1])  # layer 0 untouched (and everything before layer 1)
    assert not torch.equal(seen[1][0], seen[1][1])


def test_ablating_a_chunk_changes_only_that_chunks_contribution(monkeypatch):
    model = tiny_model("llama")
    geometry = ropescope.read_geometry(model)
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])
    kept = []

    def on_qk(layer, q_rot, k_rot, mask):
        if layer == 1:
            kept.append((q_rot[0].double().clone(), k_rot[0].double().clone()))

    with ropescope.capture(model, on_qk=on_qk, tensors=(), verify_geometry=False), torch.no_grad():
        model(input_ids=ids)
    with ablate_chunks(model, {(1, 2): [3]}, tensors=("q",)):
        with ropescope.capture(model, on_qk=on_qk, tensors=(), verify_geometry=False), torch.no_grad():
            model(input_ids=ids)
    (q0, k0), (q1, k1) = kept
    assert torch.equal(k0, k1)
    logits0, logits1 = q0 @ k0.repeat_interleave(2, 0).transpose(1, 2), q1 @ k1.repeat_interleave(2, 0).transpose(1, 2)
    a, b = ropescope.model.geometry.chunk_pair_indices(geometry.rotary_dim, geometry.layout)
    k_full = k0.repeat_interleave(2, 0)
    chunk3 = q0[2][:, [a[3]]] @ k_full[2][:, [a[3]]].T + q0[2][:, [b[3]]] @ k_full[2][:, [b[3]]].T
    torch.testing.assert_close(logits1[2], logits0[2] - chunk3, rtol=1e-9, atol=1e-9)
    for other in (0, 1, 3):
        assert torch.equal(logits1[other], logits0[other])
    ids_logits = _logits(model, ids)
    with ablate_chunks(model, {(1, 2): [3]}):
        assert not torch.equal(_logits(model, ids), ids_logits)
    assert torch.equal(_logits(model, ids), ids_logits)


def test_a_non_finite_perplexity_is_reported_as_such_and_left_out_of_the_figure(monkeypatch):
    """A variant whose logits overflow gets `inf` and a note in the table, a warning, and is named
    (not drawn) in the figure; a non-finite unmodified perplexity is refused in one line."""
    import importlib

    import matplotlib.pyplot as plt

    from ropescope.errors import NumericsError
    from ropescope.plots.prope import prope_figure

    module = importlib.import_module("ropescope.prope.perplexity")  # the package exports a function of that name
    real = module.perplexity
    calls = []

    def overflowing(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        return {**result, "perplexity": float("inf"), "nll": float("inf")} if len(calls) == 2 else result

    monkeypatch.setattr(module, "perplexity", overflowing)
    text = " ".join(TEXTS) * 2
    with pytest.warns(UserWarning, match="not finite for p p=0.5"):
        table = module.prope_table(tiny_model("llama"), CharTokenizer(), text, [0.5, 0.75], ["p"], context=32)
    assert table.perplexity.tolist()[1] == float("inf")
    assert table.note.tolist() == ["", "non-finite logits (NaN/inf): numeric overflow in this dtype", ""]
    fig = prope_figure(table, "tiny", "text", 32)
    assert "not drawn (non-finite perplexity): p p=0.5" in fig.axes[0].get_title()
    fig.savefig(__import__("io").BytesIO(), format="png")  # draws (no log-scale error)
    plt.close(fig)
    calls.clear()
    monkeypatch.setattr(
        module, "perplexity", lambda *a, **k: {**real(*a, **k), "perplexity": float("nan"), "nll": float("nan")}
    )
    with pytest.raises(NumericsError, match="unmodified model's perplexity is nan"):
        module.prope_table(tiny_model("llama"), CharTokenizer(), text, [0.5], ["p"], context=32)


def test_real_gemma_in_float16_is_refused_with_the_reason(capsys, tmp_path):
    from cli_helpers import run_main

    argv = [
        "prope",
        "--dtype",
        "float16",
        "--context",
        "64",
        "--variants",
        "p",
        "--p",
        "0.5",
        "--out",
        str(tmp_path / "r"),
    ]
    code, err = run_main(argv, capsys)
    assert code == 1 and "not finite (NaN/inf) in float16" in err and "--dtype bfloat16" in err, err
    assert len(err.strip().splitlines()) == 2 and not (tmp_path / "r").exists()  # "loading ..." and the error

"""Capture leaves the model exactly as it was, checks its geometry, and refuses what it cannot do."""

import numpy as np
import pytest
import torch
import transformers
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import GeometryMismatchError, NoRopeError, NumericsError
from ropescope.model.families import attention_sites


def _ids():
    return torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])


def _hook_count(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(getattr(m, "_forward_hooks_with_kwargs", {}))
        for m in model.modules()
    )


def _snapshot(model):
    with torch.no_grad():
        logits = model(input_ids=_ids()).logits.clone()
    code = {id(s.code_module): (s.code_module, s.code_module.apply_rotary_pos_emb) for s in attention_sites(model)}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return logits, code, state, _hook_count(model)


def _assert_unchanged(model, before):
    logits, code, state, hooks = before
    with torch.no_grad():
        after = model(input_ids=_ids()).logits
    assert torch.equal(after, logits)  # bit-identical
    for module, function in code.values():
        assert module.apply_rotary_pos_emb is function
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert _hook_count(model) == hooks


@pytest.mark.parametrize("family", ["gemma3", "qwen3", "cohere"])
def test_model_is_bit_identical_after_profiling(family):
    model = tiny_model(family)
    before = _snapshot(model)
    ropescope.profile(model, CharTokenizer(), TEXTS)
    _assert_unchanged(model, before)


def test_model_is_unchanged_after_an_exception_mid_forward():
    model = tiny_model("llama")
    before = _snapshot(model)

    def explode(module, args, output):
        raise RuntimeError("boom in layer 1")

    with pytest.raises(RuntimeError, match="boom"):
        with ropescope.capture(model) as cap:
            handle = model.model.layers[1].mlp.register_forward_hook(explode)
            try:
                model(input_ids=_ids())
            finally:
                handle.remove()
    assert cap.stats["q"].count[0] > 0 and cap.stats["q"].count[2] == 0  # it stopped mid-forward
    _assert_unchanged(model, before)


@pytest.mark.parametrize("family", ["llama", "cohere"])
def test_geometry_check_catches_a_wrong_layout(family):
    model = tiny_model(family)
    before = _snapshot(model)
    geometry = ropescope.read_geometry(model)
    wrong = geometry.with_layout("interleaved" if geometry.layout == "halves" else "halves")
    with pytest.raises(GeometryMismatchError, match="layer 0"):
        ropescope.profile(model, CharTokenizer(), TEXTS, geometry=wrong)
    _assert_unchanged(model, before)


def test_geometry_check_catches_wrong_frequencies():
    model = tiny_model("gemma3")
    geometry = ropescope.read_geometry(model)
    # pretend every layer had the sliding layers' theta: layer 1 (theta 1M) must be named
    layers = tuple(
        ropescope.model.geometry.LayerRope(geometry.layers[0].inv_freq, 1.0, lr.layer_type, lr.theta, lr.window)
        for lr in geometry.layers
    )
    wrong = ropescope.RopeGeometry(geometry.head_dim, geometry.rotary_dim, geometry.layout, layers)
    with pytest.raises(GeometryMismatchError, match="layer 1"):
        ropescope.profile(model, CharTokenizer(), TEXTS, geometry=wrong)


def test_model_without_rope_is_refused():
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=96, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    with pytest.raises(NoRopeError, match="no rotary positional encoding"):
        ropescope.profile(model, CharTokenizer(), TEXTS)


def test_bfloat16_profile_passes_the_looser_geometry_check_and_is_close_to_float32():
    model = tiny_model("gemma3")
    exact = ropescope.profile(model, CharTokenizer(), TEXTS)
    half = ropescope.profile(model.to(torch.bfloat16), CharTokenizer(), TEXTS)
    assert half.meta["dtype"] == "bfloat16"
    torch.testing.assert_close(half.stats["q"].mean, exact.stats["q"].mean, rtol=0.05, atol=0.05)


def test_float16_overflow_is_reported_not_averaged():
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].self_attn.v_proj.weight.mul_(1e6)
    model = model.to(torch.float16)
    with pytest.raises(NumericsError, match="v layer 1"):
        ropescope.profile(model, CharTokenizer(), TEXTS)
    with pytest.warns(UserWarning, match="v layer 1"):
        skipped = ropescope.profile(model, CharTokenizer(), TEXTS, on_nonfinite="skip")
    lost = skipped.meta["nonfinite_tokens"]["v"]
    assert lost[1] > 0 and lost[0] == 0
    assert skipped.stats["v"].count[1] == skipped.stats["v"].count[0] - lost[1]  # left out, not averaged
    assert torch.isfinite(skipped.stats["v"].mean[1]).all()


def test_skipped_nonfinite_layer_draws_no_conclusion_in_the_summary():
    from ropescope.profiling.summary import NO_DATA, summary_frame, summary_text

    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight.mul_(1e6)  # every query of layer 1 overflows
        model.model.layers[1].self_attn.k_proj.weight.mul_(1e6)
    model = model.to(torch.float16)
    with pytest.warns(UserWarning, match="q layer 1"):
        skipped = ropescope.profile(model, CharTokenizer(), TEXTS, on_nonfinite="skip")
    assert skipped.stats["q"].count[1] == 0 and skipped.stats["q"].count[0] > 0
    frame = summary_frame(skipped)
    empty = frame[(frame.tensor == "q") & (frame.layer == 1)].iloc[0]
    assert empty.dominant_band == NO_DATA and np.isnan(empty.semantic_share)
    text = summary_text(skipped)
    empty_layers = [i for i, n in enumerate(skipped.stats["q"].count.tolist()) if n == 0]
    assert 1 in empty_layers and 0 not in empty_layers
    headline = next(line for line in text.splitlines() if line.startswith("q: "))
    assert f"of {3 - len(empty_layers)} layers" in headline  # conclusions only from layers with data
    assert f"Layers {', '.join(map(str, empty_layers))} had no finite tokens and are left out" in headline
    assert "Tokens left out as non-finite" in text


def test_hook_sets_exited_out_of_order_leave_the_model_as_it_was():
    """Two captures and an intervention entered A, B, C and exited A, C, B (not innermost first):
    each still sees what it would see alone while installed, and the model is restored at the end."""
    model = tiny_model("llama")
    before = _snapshot(model)
    alone = ropescope.capture(model)
    with alone as reference:
        with torch.no_grad():
            model(input_ids=_ids())
    first, second = ropescope.capture(model), ropescope.capture(model)
    halve = ropescope.intervene(model, edit_q=lambda layer, q: q * 0.5)
    a, b = first.__enter__(), second.__enter__()
    halve.__enter__()
    first.__exit__(None, None, None)  # the outermost context leaves first
    with torch.no_grad():
        model(input_ids=_ids())
    halve.__exit__(None, None, None)
    with torch.no_grad():
        model(input_ids=_ids())
    second.__exit__(None, None, None)
    _assert_unchanged(model, before)
    assert a.stats["q"].count.sum() == 0  # removed before any forward
    # b saw layer 0's queries halved once (it was installed before the intervention, so it sees the
    # edited call) and plain once; layer 0's keys were plain both times
    torch.testing.assert_close(b.stats["k"].mean[0], reference.stats["k"].mean[0])
    assert b.stats["q"].count[0] == 2 * reference.stats["q"].count[0]
    torch.testing.assert_close(b.stats["q"].mean[0], 0.75 * reference.stats["q"].mean[0])


def test_p_rope_at_p_one_changes_no_logit_of_a_cached_generation_step():
    """A forward with a KV cache and no position_ids: the new token is at position `cached`, not 0
    (p = 1 must reproduce the model exactly; p = 0.5 must match a full recomputation)."""
    model = tiny_model("llama")
    ids = torch.tensor([CharTokenizer()(TEXTS[0])["input_ids"][:12]])

    def cached_step_logits():
        with torch.no_grad():
            first = model(input_ids=ids[:, :-1], use_cache=True)
            return model(input_ids=ids[:, -1:], past_key_values=first.past_key_values, use_cache=True).logits[0, -1]

    plain = cached_step_logits()
    with ropescope.p_rope(model, 1.0):
        assert torch.equal(cached_step_logits(), plain)
    with ropescope.p_rope(model, 0.5):
        stepped = cached_step_logits()
        with torch.no_grad():
            whole = model(input_ids=ids).logits[0, -1]
    torch.testing.assert_close(stepped, whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(stepped, plain)


@pytest.mark.filterwarnings("ignore:1 of 1 prompts")
def test_hooks_on_one_model_never_touch_another_model_of_the_same_family_in_another_thread():
    """Two models of one family share the module-level RoPE function the hooks wrap: a capture and an
    intervention on model A count and edit only A's tokens while model B runs in another thread."""
    import threading

    a, b = tiny_model("llama"), tiny_model("llama")
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"][:16]])
    with torch.no_grad():
        b_plain = b(input_ids=ids).logits
    alone = ropescope.profile(a, CharTokenizer(), [TEXTS[1]], max_tokens=16)
    started, stop, b_results = threading.Event(), threading.Event(), []

    def run_b():
        started.set()
        while not stop.is_set():
            with torch.no_grad():
                b_results.append(b(input_ids=ids).logits)

    thread = threading.Thread(target=run_b)
    thread.start()
    started.wait()
    try:
        for _ in range(5):
            with ropescope.p_rope(a, 0.0):
                with torch.no_grad():
                    a(input_ids=ids)
            prof = ropescope.profile(a, CharTokenizer(), [TEXTS[1]], max_tokens=16)
            assert prof.n_tokens == alone.n_tokens  # A's tokens only (B's would add theirs)
            assert torch.equal(prof.stats["q"].mean, alone.stats["q"].mean)
    finally:
        stop.set()
        thread.join()
    assert b_results and all(torch.equal(r, b_plain) for r in b_results)  # B was never edited


def test_a_model_left_in_training_mode_is_measured_as_used_and_left_so():
    """Attention and hidden dropout at 0.5, the model in training mode: every entry point runs it in
    eval mode (two calls agree, and equal the eval-mode model), and each module's mode comes back."""
    from ropescope.prope.perplexity import perplexity, prope_table

    model = tiny_model("llama", dtype=torch.float32)
    model.config.attention_dropout = 0.5
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    text = " ".join(TEXTS) * 3

    def measured():
        frame = ropescope.profile(model, CharTokenizer(), list(TEXTS)).frame()["mean_norm"].to_numpy()
        heads = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=2).table["offset_1"].to_numpy()
        ppl = perplexity(model, CharTokenizer(), text, context=32)["perplexity"]
        table = prope_table(model, CharTokenizer(), text, [0.5], context=32)
        return frame, heads, ppl, table["perplexity"].to_numpy()

    model.eval()
    reference = measured()
    model.train()
    model.model.layers[0].mlp.eval()  # a mixed state comes back as it was too
    modes = [m.training for m in model.modules()]
    for _ in range(2):
        for ours, theirs in zip(measured(), reference, strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert [m.training for m in model.modules()] == modes

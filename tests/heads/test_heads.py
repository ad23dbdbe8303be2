"""Head scores: block-wise attention equals the model's own, hand-built heads are found, the
attribution adds up to the logits, NoPE cannot focus, and the causal test equals a real intervention."""

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import PromptError, UnsupportedModelError
from ropescope.heads.causal import causal_test
from ropescope.heads.scan import _classify, scan_heads
from ropescope.heads.scores import HeadArrays, HeadScoreReducer
from ropescope.hooks import zero_chunks
from ropescope.hooks.attention import attention_blocks
from ropescope.model.anatomy import LogitRule, inspect_model
from ropescope.model.families import attention_sites
from ropescope.model.geometry import chunk_dims

K = 4


def eager_offset_scores(model, texts):
    """Mean attention on offsets 0..K and the first token, from output_attentions, by explicit loops."""
    cfg = model.config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    sums, rows = np.zeros((n_layers, n_heads, K + 2)), np.zeros((n_layers, K + 2))
    windows = [ropescope.read_geometry(model).layers[i].window for i in range(n_layers)]
    for text in texts:
        ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True).attentions
        seq = ids.shape[1]
        for layer, att in enumerate(attentions):
            w = windows[layer] or 10**9
            for i in range(1, seq):
                for d in range(K + 1):
                    if i >= d + 1 and d < w:
                        sums[layer, :, d] += att[0, :, i, i - d].double().numpy()
                        rows[layer, d] += 1
                if i < w:
                    sums[layer, :, K + 1] += att[0, :, i, 0].double().numpy()
                    rows[layer, K + 1] += 1
    return sums / rows[:, None, :]


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "llama", "qwen3", "mistral", "cohere", "phi"])
def test_blockwise_scores_equal_eager_attention_weights(family, monkeypatch):
    """Blocks of 7 rows in the normaliser pass (its position masks reused across layers, prompts of
    other lengths and sliding / global rules) give eager attention's scores."""
    import ropescope.hooks.attention as attention

    monkeypatch.setattr(attention, "LSE_BLOCK_ELEMENTS", {"cpu": 1})  # rows per block: the reducer's 7
    model = tiny_model(family)
    geometry = ropescope.read_geometry(model)
    reducer = HeadScoreReducer(
        geometry, inspect_model(model, geometry).logit_rules, model.config.num_attention_heads, K, block=7
    )
    ropescope.profile(model, CharTokenizer(), TEXTS, batch_size=1, reducers=[reducer], tensors=())
    expected = eager_offset_scores(model, TEXTS)
    got = np.concatenate([reducer.arrays.offset_scores(), reducer.arrays.sink_scores()[..., None]], axis=-1)
    if family == "gemma2":
        assert reducer.rules[0].softcap == 50.0
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(expected), rtol=1e-5, atol=1e-6)


def synthetic_head(psi: torch.Tensor, shift: int, seq: int, inv_freq: torch.Tensor):
    """T5.3: post-RoPE q_i = R^i psi and k_j = R^(j+shift) psi (shift 0: diagonal, 1: previous token)."""
    positions = torch.arange(seq, dtype=torch.float64)
    pre = psi.expand(1, seq, -1)
    q = ropescope.model.geometry.rotate(pre, positions, inv_freq, "halves")
    k = ropescope.model.geometry.rotate(pre, positions + shift, inv_freq, "halves")
    return q.float(), k.float()


@pytest.mark.parametrize("shift, expected_class, offset", [(0, "diagonal", 0), (1, "previous-token", 1)])
def test_hand_built_heads_are_classified_and_sharpen_with_norm(shift, expected_class, offset):
    n_chunks, seq = 8, 24
    inv_freq = 10_000.0 ** (-torch.arange(n_chunks, dtype=torch.float64) / n_chunks)
    geometry = ropescope.RopeGeometry(
        16, 16, "halves", (ropescope.model.geometry.LayerRope(inv_freq.numpy(), 1.0, None, 10_000.0),)
    )
    scores = []
    for norm in (1.0, 2.0, 4.0, 8.0, 32.0):
        psi = torch.zeros(16, dtype=torch.float64)
        psi[0] = norm  # all of psi in the fastest chunk (1 rad/token; it nearly returns after 19)
        q, k = synthetic_head(psi, shift, seq, inv_freq)
        reducer = HeadScoreReducer(geometry, [LogitRule(1.0, None, None)], 1, K)
        reducer.add(0, q, k)
        off = reducer.arrays.offset_scores()[0, 0]
        scores.append(off[offset])
        cls, score, target = _classify(off, float(reducer.arrays.sink_scores()[0, 0]), 0.5)
    assert np.all(np.diff(scores) > 0)  # sharper as ||psi||^2 grows
    assert cls == expected_class and target == offset and score > 0.99


def test_attribution_adds_up_to_the_logits(monkeypatch):
    model = tiny_model("gemma3")
    geometry = ropescope.read_geometry(model)
    rules = inspect_model(model, geometry).logit_rules
    reducer = HeadScoreReducer(geometry, rules, 4, K)
    code = attention_sites(model)[0].code_module
    seen = {}
    original = code.apply_rotary_pos_emb

    def spy(q, k, cos, sin, *a, **kw):
        out = original(q, k, cos, sin, *a, **kw)
        seen[len(seen)] = (out[0][0].double(), out[1][0].double())
        return out

    monkeypatch.setattr(code, "apply_rotary_pos_emb", spy)
    text = TEXTS[3]
    ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
    with torch.no_grad():
        model(input_ids=ids)
    monkeypatch.undo()
    ropescope.profile(model, CharTokenizer(), [text], batch_size=1, reducers=[reducer], tensors=())
    target, _ = reducer.arrays.target_attribution()
    pass_part = reducer.arrays.target_pass_sum / reducer.arrays.target_rows[:, None, :]
    for layer, (q, k) in seen.items():
        logits = rules[layer].scaling * (q @ k.repeat_interleave(2, 0).transpose(1, 2))  # [H, S, S]
        seq = logits.shape[1]
        for d in range(K + 1):
            if rules[layer].window and d >= rules[layer].window:
                continue
            rows = torch.arange(d + 1, seq)
            direct = logits[:, rows, rows - d].mean(dim=1).numpy()
            np.testing.assert_allclose(
                target[layer, :, d].sum(-1) + pass_part[layer, :, d], direct, rtol=1e-6, atol=1e-6
            )


def test_nope_head_cannot_put_more_than_half_on_the_diagonal_of_bos_x_x():
    """P5.2: without rotation, the last of [bos, x, x] sees two identical keys."""
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.rotary_emb.inv_freq.zero_()  # NoPE: every frequency 0
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(20)  # sharp attention, as sharp as weights allow
    geometry = ropescope.read_geometry(model)
    reducer_inputs = {}

    def on_qk(layer, q_rot, k_rot, mask):
        reducer_inputs[layer] = (q_rot[0].float(), k_rot[0].float())

    with ropescope.capture(model, on_qk=on_qk, tensors=()):
        model(input_ids=torch.tensor([[1, 7, 7]]))
    # the first layer sees the two x tokens as identical inputs (later layers mix in context)
    (block,) = attention_blocks(*reducer_inputs[0], inspect_model(model, geometry).logit_rules[0])
    assert torch.all(block.probs[:, 2, 2] <= 0.5 + 1e-6)
    torch.testing.assert_close(block.probs[:, 2, 2], block.probs[:, 2, 1])
    # with RoPE at the same weights, the first layer can break the tie
    model.model.rotary_emb.inv_freq.copy_(model.model.rotary_emb.original_inv_freq)
    with ropescope.capture(model, on_qk=on_qk, tensors=()):
        model(input_ids=torch.tensor([[1, 7, 7]]))
    (block,) = attention_blocks(*reducer_inputs[0], inspect_model(model, geometry).logit_rules[0])
    assert not torch.allclose(block.probs[:, 2, 2], block.probs[:, 2, 1])


def test_causal_test_equals_running_the_intervention():
    model = tiny_model("llama")
    geometry = ropescope.read_geometry(model)
    table = causal_test(model, CharTokenizer(), TEXTS, [(1, 2, 1)], n_chunks=3, draws=2)
    assert list(table.condition) == ["none", "fastest", "slowest", "random 1", "random 2"]
    dims = chunk_dims(geometry)
    for row in table.itertuples():
        chunks = [int(c) for c in row.chunks.split()] if row.chunks else []
        reducer = HeadScoreReducer(geometry, inspect_model(model, geometry).logit_rules, 4, 1, layers={1})
        edit = zero_chunks(dims, {(1, 2): chunks}, "q") if chunks else None
        with torch.no_grad():
            for text in TEXTS:
                ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
                with ropescope.capture(model, reducers=[reducer], tensors=()), ropescope.intervene(model, edit_q=edit):
                    model(input_ids=ids)
        assert reducer.arrays.offset_scores()[1, 2, 1] == pytest.approx(row.score, rel=1e-5)
    assert table.loc[table.condition == "none", "change"].item() == 0.0


def test_scan_heads_table_and_bad_input():
    model = tiny_model("gemma3")
    report = scan_heads(model, CharTokenizer(), TEXTS, max_offset=K)
    table = report.table
    assert len(table) == 3 * 4 and set(table["class"].astype(str)) <= {
        "diagonal",
        "previous-token",
        "positional-other",
        "bos-sink",
        "semantic/mixed",
    }
    assert table["hf_score"].between(0, 1).all()
    agreement = report.agreement()
    assert -1 <= agreement["spearman"] <= 1
    with pytest.raises(PromptError, match="prompt 0 is empty"):
        scan_heads(model, CharTokenizer(), ["", ""])


@pytest.mark.parametrize(
    "family, overrides",
    [("phi", {"qk_layernorm": True}), ("stablelm", {"qk_layernorm": True}), ("persimmon", None), ("stablelm", None)],
)
def test_partial_rotary_heads_see_the_unrotated_dims(family, overrides):
    """Phi, StableLM and Persimmon hand RoPE only their rotary dims and concatenate the rest after;
    head scores read the rest where the model makes it (its QK layer norm, per-head projection or fused
    projection) and equal the model's own eager attention weights."""
    from ropescope.survey import TEXTS as SURVEY_TEXTS
    from ropescope.survey import CharTokenizer as SurveyTokenizer
    from ropescope.survey import tiny_model as survey_model

    model = survey_model(family, overrides)
    geometry = ropescope.read_geometry(model)
    assert geometry.rotary_dim < geometry.head_dim
    reducer = HeadScoreReducer(
        geometry, inspect_model(model, geometry).logit_rules, model.config.num_attention_heads, K, block=5
    )
    ropescope.profile(model, SurveyTokenizer(), SURVEY_TEXTS, batch_size=1, reducers=[reducer], tensors=())
    cfg, rows = model.config, 0
    expected = np.zeros((cfg.num_hidden_layers, cfg.num_attention_heads))
    for text in SURVEY_TEXTS:  # offset 1 from output_attentions, by explicit loops (keys after BOS)
        ids = torch.tensor([SurveyTokenizer()(text)["input_ids"]])
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True).attentions
        for layer, att in enumerate(attentions):
            for i in range(2, ids.shape[1]):
                expected[layer] += att[0, :, i, i - 1].double().numpy()
        rows += ids.shape[1] - 2
    np.testing.assert_allclose(reducer.arrays.offset_scores()[..., 1], expected / rows, rtol=1e-5, atol=1e-6)


def test_partial_rotary_heads_refused_when_the_unrotated_dims_are_not_seen(monkeypatch):
    import ropescope.hooks.observe as observe

    def unreadable(site):
        raise UnsupportedModelError(f"layer {site.layer}: nothing to read")

    monkeypatch.setattr(observe, "pass_sources", unreadable)
    with pytest.raises(UnsupportedModelError, match="passes only 8 of its 16 dims"):
        scan_heads(tiny_model("phi"), CharTokenizer(), TEXTS)


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_row_blocks_of_the_attribution_change_nothing(family, monkeypatch):
    """Rows taken one at a time (the smallest block) give the same sums as all rows in one block."""
    import ropescope.heads.scores as scores

    model = tiny_model(family)
    whole = scan_heads(model, CharTokenizer(), TEXTS, max_offset=K).arrays
    monkeypatch.setattr(scores, "_BLOCK_ELEMENTS", {"cpu": 1})
    rows = scan_heads(model, CharTokenizer(), TEXTS, max_offset=K).arrays
    for name in HeadArrays.__dataclass_fields__:
        np.testing.assert_allclose(getattr(rows, name), getattr(whole, name), rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_target_offset_is_an_integer_column():
    """Callers read the preferred offset as an integer (``<NA>`` for the sink), never by parsing text."""
    table = scan_heads(tiny_model("gemma3"), CharTokenizer(), TEXTS, max_offset=K).table
    assert str(table["target_offset"].dtype) == "Int64"
    for text, offset in zip(table["target"], table["target_offset"], strict=True):
        assert (offset is pd.NA) if text == "sink" else (text == f"offset {offset}")


def test_causal_test_lowers_n_chunks_to_half_the_heads_chunks():
    """A head with few chunks (8 here, like GLM-4's 4 at head dim 16): the default of 8 zeroed chunks
    is lowered to half, with a warning, never refused; the fastest and slowest sets stay disjoint."""
    model = tiny_model("llama")
    n_total = ropescope.read_geometry(model).layer_chunks(1)
    with pytest.warns(UserWarning, match=f"zeroing {n_total // 2} chunks instead of 8"):
        table = causal_test(model, CharTokenizer(), TEXTS[:2], [(1, 2, 1)], n_chunks=8, draws=1)
    chunks = {row.condition: [int(c) for c in row.chunks.split()] for row in table.itertuples()}
    assert chunks["fastest"] == list(range(n_total // 2))
    assert chunks["slowest"] == list(range(n_total // 2, n_total))
    assert len(chunks["random 1"]) == n_total // 2
    with pytest.raises(PromptError, match="at least 1"):
        causal_test(model, CharTokenizer(), TEXTS[:2], [(1, 2, 1)], n_chunks=0)


def test_an_offset_beyond_every_prompt_is_capped_with_a_warning():
    """`--max-offset 2000000` on short prompts: scored up to what the longest prompt holds (seconds,
    not minutes and gigabytes), with a warning; the scores it keeps are the uncapped scan's."""
    model = tiny_model("llama")
    longest = max(len(CharTokenizer()(t)["input_ids"]) for t in TEXTS)
    with pytest.warns(UserWarning, match=f"offsets scored up to {longest - 2} instead of 2000000"):
        report = ropescope.scan_heads(model, CharTokenizer(), TEXTS, max_offset=2_000_000)
    assert report.max_offset == longest - 2
    small = ropescope.scan_heads(model, CharTokenizer(), TEXTS, max_offset=4)
    for d in range(5):
        np.testing.assert_allclose(report.table[f"offset_{d}"], small.table[f"offset_{d}"], atol=1e-7)

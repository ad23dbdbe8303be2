"""Head scores are exact or refused: sinks and bidirectional masks are part of the logit rule, and
the gate compares the recomputed attention with the model's own eager attention on every scan."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_helpers import assert_no_output, assert_one_line_error
from hub_stand_in import char_tokenizer
from tiny import DecodingCharTokenizer

import ropescope
from ropescope.heads.gate import AttentionRuleError, check_attention_rule, eager_attention
from ropescope.hooks.attention import SparseAttentionError
from ropescope.model.anatomy import inspect_model
from ropescope.survey import TEXTS, CharTokenizer, tiny_model


def _mean_offset(model, d: int, rows_from: int) -> np.ndarray:
    """[L, H] mean of the model's own eager attention on key i - d over rows i >= rows_from, all TEXTS."""
    sums, count = 0, 0
    for text in TEXTS:
        ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
        a = torch.stack([x[0] for x in attentions]).double().numpy()  # [L, H, S, S]
        rows = range(rows_from, a.shape[2])
        sums = sums + sum(a[:, :, i, i - d] for i in rows)
        count += len(rows)
    return sums / count


def _scores(model, column: str) -> np.ndarray:
    table = ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=2).table
    return table.sort_values(["layer", "head"])[column].to_numpy().reshape(inspect_model(model).n_layers, -1)


def test_learned_sinks_are_in_the_scores():
    model = tiny_model("gpt_oss")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("sinks"):
                param.fill_(3.0)  # the case: sink logits of 3 take most of the attention
    ours, theirs = _scores(model, "offset_1"), _mean_offset(model, 1, 2)
    assert np.allclose(ours, theirs, atol=1e-6)
    assert theirs.max() < 0.2  # the sink really takes mass: without it the rows would be ~3x larger


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_one_heads_view_with_sinks_equals_eager_attention(kv_heads):
    """GPT-OSS's per-head view (grouped or not): the view's one head takes its own sink logit only."""
    from ropescope.heads.views import head_view

    model = tiny_model("gpt_oss", {"num_attention_heads": 4, "num_key_value_heads": kv_heads})
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("sinks"):
                param.copy_(torch.linspace(-1.0, 3.0, param.numel()))  # a different sink per head
    text = TEXTS[1]
    ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
    with torch.no_grad():
        attentions = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    for layer, head in [(0, 0), (0, 3), (1, 2)]:
        view = head_view(model, DecodingCharTokenizer(), layer, head, text, max_tokens=64)
        np.testing.assert_allclose(view.attention, attentions[layer][0, head].double().numpy(), atol=1e-6)


def test_bidirectional_attention_sees_later_keys():
    model = tiny_model("gemma3_text", dict(use_bidirectional_attention=True))
    assert not inspect_model(model).logit_rules[0].causal
    ours, theirs = _scores(model, "offset_0"), _mean_offset(model, 0, 1)
    assert np.allclose(ours, theirs, atol=1e-6)
    causal = _mean_offset(tiny_model("gemma3_text"), 0, 1)
    assert not np.allclose(theirs, causal, atol=1e-3)  # the mask matters on these weights


SPARSE = [
    ("deepseek_v32", {"index_topk": 8}),  # an indexer in every layer keeps 8 keys per query
    ("glm_moe_dsa", {"index_topk": 8, "indexer_types": ["full", "shared"]}),  # layer 1 reuses layer 0's choice
    ("qwen4_exp_text", {"indexer_budget": 8, "indexer_compress_ratio": 4}),  # 2 blocks of 4 tokens, layer 1
    (  # 2 blocks of 4 keys per query, in its sparse layer only
        "minimax_m3_vl_text",
        {"index_topk_blocks": 2, "index_block_size": 4, "layer_types": ["minimax_m3_sparse", "full_attention"]},
    ),
]


@pytest.mark.parametrize("model_type, overrides", SPARSE, ids=[s[0] for s in SPARSE])
def test_sparse_attention_is_scored_only_where_it_is_dense(model_type, overrides):
    """A layer whose indexer keeps the top 8 keys (or 2 blocks of 4) per query attends densely up to
    8 tokens: there the scores equal its own eager attention; a longer prompt, where the selection
    really changes the attention (the dense rule misses the model's own), is refused naming the
    layer and the length that works."""
    model = tiny_model(model_type, overrides)
    anatomy = inspect_model(model)
    sparse = [layer for layer, rule in enumerate(anatomy.logit_rules) if rule and rule.dense_up_to is not None]
    assert [anatomy.logit_rules[layer].dense_up_to for layer in sparse] == [8] * len(sparse) and sparse
    short = "To be, "
    ids = torch.tensor([CharTokenizer()(short)["input_ids"]])
    assert ids.shape[1] == 8
    with torch.no_grad():
        own = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    table = ropescope.scan_heads(model, CharTokenizer(), [short], max_offset=2).table.sort_values(["layer", "head"])
    rows = torch.arange(2, 8)
    theirs = torch.stack([a[0][:, rows, rows - 1].double().mean(-1) for a in own]).reshape(-1).numpy()
    assert np.allclose(table["offset_1"].to_numpy(), theirs, atol=1e-6)
    with pytest.raises(SparseAttentionError, match="sparse attention") as refused:
        ropescope.scan_heads(model, CharTokenizer(), list(TEXTS), max_offset=2)
    assert f"layer {sparse[0]} " in str(refused.value) and "--max-tokens 8" in str(refused.value)
    dense = tuple(None if r is None else dataclasses.replace(r, dense_up_to=None) for r in anatomy.logit_rules)
    anatomy.__dict__["logit_rules"] = dense  # as before: the dense rule on a 20-token prompt
    long = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with pytest.raises(AttentionRuleError, match="misses the model's"):
        check_attention_rule(anatomy, long)


def test_a_wrong_logit_rule_is_refused_naming_the_layer():
    anatomy = inspect_model(tiny_model("llama"))
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    assert check_attention_rule(anatomy, ids) < 1e-5
    rules = list(anatomy.logit_rules)
    rules[1] = type(rules[1])(rules[1].scaling * 1.5, rules[1].softcap, rules[1].window)
    anatomy.__dict__["logit_rules"] = tuple(rules)
    with pytest.raises(AttentionRuleError, match=r"^layer 1: attention recomputed .* misses the model's own"):
        check_attention_rule(anatomy, ids)
    with pytest.raises(AttentionRuleError, match="layer 1"):
        ropescope.scan_heads(anatomy, CharTokenizer(), list(TEXTS))


def test_eager_attention_is_restored_exactly():
    model = tiny_model("gemma3_text")
    model.config._attn_implementation = "sdpa"
    before = {
        id(m.config): m.config.__dict__.get("_attn_implementation_internal")
        for m in model.modules()
        if hasattr(m, "config")
    }
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    after = {
        id(m.config): m.config.__dict__.get("_attn_implementation_internal")
        for m in model.modules()
        if hasattr(m, "config")
    }
    assert after == before and model.config._attn_implementation == "sdpa"


# the CLI run with one layer's logit rule made wrong (its scaling x1.5), as a family with an attention
# term ropescope does not model would make it: every family in the table is now modelled
WRONG_RULE = """
import functools, sys
from ropescope.model.anatomy import ModelAnatomy
own = ModelAnatomy.logit_rules.func

@functools.cached_property
def wrong(self):
    rules = list(own(self))
    rules[0] = type(rules[0])(rules[0].scaling * 1.5, rules[0].softcap, rules[0].window)
    return tuple(rules)

wrong.__set_name__(ModelAnatomy, "logit_rules")
ModelAnatomy.logit_rules = wrong
from ropescope.cli import main
sys.argv = ["ropescope", *sys.argv[1:]]
main()
"""


def test_heads_cli_refuses_a_model_whose_attention_it_cannot_recompute(tmp_path):
    directory = tmp_path / "llama"
    tiny_model("llama").save_pretrained(directory)
    char_tokenizer(directory)
    out = tmp_path / "heads"
    args = ["heads", str(directory), "--prompts", "shakespeare", "--max-tokens", "32", "--out", str(out)]
    result = subprocess.run([sys.executable, "-c", WRONG_RULE, *args], capture_output=True, text=True, timeout=600)
    assert_one_line_error(result, "layer 0: attention recomputed from the RoPE'd q, k and the logit rule misses")
    assert_no_output(out)

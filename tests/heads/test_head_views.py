"""Per-prompt head views, the Cauchy-Schwarz table, and the heads commands end to end."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_no_output, assert_one_line_error, run_cli, run_here
from tiny import TEXTS, CharTokenizer, DecodingCharTokenizer, tiny_model

import ropescope
from ropescope.errors import PromptError, RopescopeError
from ropescope.heads.scan import scan_heads
from ropescope.heads.views import cauchy_schwarz_table, head_view

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "llama"])
def test_view_equals_eager_attention_and_bounds_hold(family):
    model = tiny_model(family)
    view = head_view(model, DecodingCharTokenizer(), 2, 3, TEXTS[3], max_tokens=30)
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"][:30]])
    with torch.no_grad():
        eager = model(input_ids=ids, output_attentions=True).attentions[2][0, 3].numpy()
    np.testing.assert_allclose(view.attention, eager, rtol=1e-5, atol=1e-6)
    table = cauchy_schwarz_table(view, 0, 10)
    assert list(table.token) == list(range(11))
    for name in ("diagonal", "previous"):
        ok = table[f"bound_{name}"].notna()
        assert (table.loc[ok, f"logit_{name}"].abs() <= table.loc[ok, f"bound_{name}"] + 1e-4).all()
    assert np.isnan(table.loc[0, "logit_previous"])  # token 0 has no previous token


def test_view_bad_input():
    model = tiny_model("llama")
    with pytest.raises(RopescopeError, match="layer 3 is out of range"):
        head_view(model, DecodingCharTokenizer(), 3, 0, "abc")
    with pytest.raises(RopescopeError, match="head 4 is out of range"):
        head_view(model, DecodingCharTokenizer(), 0, 4, "abc")
    with pytest.raises(PromptError, match="empty"):
        head_view(model, DecodingCharTokenizer(), 0, 0, "  ")
    with pytest.raises(PromptError, match="one token"):
        head_view(model, DecodingCharTokenizer(), 0, 0, "abc", max_tokens=1)


def test_real_gemma_previous_token_head_is_found_and_explained(gemma):
    """On real Gemma 3 270M: a previous-token head exists, uses the fastest chunks, and needs them."""
    model, tokenizer = gemma
    from ropescope import load_prompts
    from ropescope.heads.causal import causal_test

    texts = load_prompts("shakespeare")[:6]
    report = scan_heads(model, tokenizer, texts)
    previous = report.table[report.table["class"] == "previous-token"]
    assert len(previous) >= 1
    top = previous.iloc[0]
    assert top["score"] > 0.5
    assert top["hf_score"] == report.table["hf_score"].max()  # the most high-frequency head
    causal = causal_test(model, tokenizer, texts, [(int(top.layer), int(top["head"]), 1)], n_chunks=8, draws=3)
    change = causal.set_index("condition")["change"]
    assert change["fastest"] < -0.3 and abs(change["slowest"]) < 0.05


def test_real_gemma_view_equals_eager_attention(gemma):
    model, tokenizer = gemma
    view = head_view(model, tokenizer, 2, 3, "To be, or not to be, that is the question.", max_tokens=20)
    ids = torch.tensor([tokenizer("To be, or not to be, that is the question.")["input_ids"][:20]])
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            eager = model(input_ids=ids, output_attentions=True).attentions[2][0, 3].numpy()
    finally:
        model.set_attn_implementation(previous)
    np.testing.assert_allclose(view.attention, eager, rtol=1e-4, atol=1e-5)


def test_heads_and_head_commands_end_to_end(tmp_path, gemma):
    prompts = tmp_path / "p.txt"
    prompts.write_text("To be, or not to be, that is the question.\nAll the world's a stage.\n")
    out = tmp_path / "heads"
    result = subprocess.run(
        [
            sys.executable,
            "cli.py",
            "heads",
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--draws",
            "2",
            "--with-profile",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert {"heads.csv", "heads.md", "agreement.json", "profile.safetensors"} <= {p.name for p in out.iterdir()}
    assert "heads per class" in result.stdout and "Spearman" in result.stdout
    # --with-profile: the whole profile of the same passes, equal to a profile run one prompt per pass
    assert {"chunk_norms.csv", "massive_values.csv", "summary.txt"} <= {p.name for p in out.iterdir()}
    assert list(out.glob("fig13_value_usage_per_layer_*.png"))
    saved = ropescope.load_profile(out / "profile.safetensors")
    direct = ropescope.profile(gemma, gemma.tokenizer, ropescope.load_prompts(str(prompts)), batch_size=1)
    for tensor in "qkv":
        np.testing.assert_allclose(saved.stats[tensor].mean.numpy(), direct.stats[tensor].mean.numpy(), rtol=1e-9)
    single = run_cli(
        "head", "gemma-3-270m", "2", "3", "--prompt", "To be, or not to be", "--out", str(tmp_path / "one")
    )
    assert single.returncode == 0, single.stderr
    assert "bound_diagonal" in single.stdout
    assert len(list((tmp_path / "one").glob("*.png"))) == 3


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["head", "gemma-3-270m", "18", "0", "--prompt", "hi there"], "layer 18 is out of range"),
        (["head", "gemma-3-270m", "0", "4", "--prompt", "hi there"], "head 4 is out of range"),
        (["head", "gemma-3-270m", "0", "0", "--prompt", " "], "the prompt is empty"),
        (["head", "gemma-3-270m", "0", "0", "--prompt", "hi", "--max-tokens", "1"], "one token"),
        (["heads", "--max-offset", "0"], "Invalid value for '--max-offset'"),
        (["heads", "--threshold", "1.5"], "Invalid value for '--threshold'"),
        (["heads", "--hf-fraction", "nan"], "Invalid value for '--hf-fraction'"),
    ],
)
def test_heads_bad_input(capsys, tmp_path, args, fragment):
    out = tmp_path / "run"
    result = run_here(capsys, *args, "--out", str(out))
    assert_one_line_error(result, fragment)
    assert_no_output(out)

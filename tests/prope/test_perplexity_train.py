"""Perplexity, the inference p-RoPE table, and T2 training from scratch (tiny budgets)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_here
from tiny import TEXTS, CharTokenizer, tiny_model

from ropescope.errors import PromptError
from ropescope.prompts import load_text
from ropescope.prope.perplexity import perplexity, prope_table, token_windows
from ropescope.prope.train import ENCODINGS, TrainConfig, batch_at, build_model, load_corpus, run_t2, train_one

TEXT = " ".join(TEXTS) * 3


@pytest.mark.parametrize("logit_rows", [256, 7])  # 7: logits formed in many blocks across padded windows
def test_perplexity_equals_a_direct_computation(logit_rows, monkeypatch):
    import importlib

    perplexity_module = importlib.import_module("ropescope.prope.perplexity")

    monkeypatch.setattr(perplexity_module, "LOGIT_ROWS", logit_rows)
    model = tiny_model("gemma3")
    tok = CharTokenizer()
    result = perplexity(model, tok, TEXT, context=40, batch_size=3)
    windows = token_windows(tok, TEXT, 40)
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            logits = model(input_ids=ids).logits[0, :-1].double()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += len(window) - 1
    assert result["tokens"] == count and result["windows"] == len(windows)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert all(w[0] == tok.bos_token_id and len(w) <= 40 for w in windows)


def test_bad_evaluation_input(tmp_path):
    model, tok = tiny_model("llama"), CharTokenizer()
    with pytest.raises(PromptError, match="at least 2 tokens"):
        token_windows(tok, TEXT, 1)
    with pytest.raises(PromptError, match="exceeds the model's context of 256"):
        token_windows(tok, TEXT, 1000, model)
    with pytest.raises(PromptError, match="at least 2 are needed"):
        token_windows(tok, "", 16)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(PromptError, match="is empty"):
        load_text(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(PromptError, match="not UTF-8"):
        load_text(str(tmp_path / "latin1.txt"))
    with pytest.raises(PromptError, match="neither a built-in text"):
        load_text(str(tmp_path / "missing.txt"))
    assert len(load_text("heldout")) > 5000


def test_prope_table_rows_and_reference():
    model = tiny_model("llama")
    table = prope_table(model, CharTokenizer(), TEXT, [0.5, 1.0], ["p", "reversed"], context=40)
    assert list(zip(table.variant, table.p, strict=True)) == [("rope", 1.0), ("p", 0.5), ("reversed", 0.5)]
    assert table.loc[0, "ratio"] == 1.0 and table.loc[0, "change"] == 0.0
    direct = perplexity(model, CharTokenizer(), TEXT, context=40)["perplexity"]
    assert table.loc[0, "perplexity"] == pytest.approx(direct)


def test_real_gemma_drops_slow_frequencies_more_gracefully_than_fast_ones(gemma):
    """On the pretrained Gemma 3 270M, 0.75-RoPE barely changes perplexity; dropping the fastest 25% does."""
    model, tok = gemma
    text = load_text("heldout")[:1500]
    table = prope_table(model, tok, text, [0.75], ["p", "reversed"], context=128).set_index("variant")
    assert table.loc["p", "ratio"] < 1.1
    assert table.loc["reversed", "ratio"] > 2.0


TINY = TrainConfig(
    layers=1,
    hidden=32,
    heads=4,
    head_dim=8,
    intermediate=64,
    seq_len=32,
    batch=4,
    steps=4,
    warmup=1,
    eval_windows=4,
    checkpoint_every=2,
)


@pytest.fixture(scope="module")
def corpus():
    data, _ = load_corpus(limit_bytes=200_000)
    data = np.frombuffer(data, dtype=np.uint8)
    return data[:180_000], data[180_000:]


def test_every_encoding_sees_the_same_batches_and_the_right_frequencies():
    data = np.arange(10_000) % 256
    assert torch.equal(batch_at(data, 1, 7, TINY), batch_at(data, 1, 7, TINY))
    assert not torch.equal(batch_at(data, 1, 7, TINY), batch_at(data, 2, 7, TINY))
    nope = build_model("NoPE", TINY, 0).model.rotary_emb.inv_freq
    quarter = build_model("0.75-RoPE", TINY, 0).model.rotary_emb
    assert torch.all(nope == 0)
    assert torch.all(quarter.inv_freq[3:] == 0) and torch.equal(quarter.inv_freq[:3], quarter.original_inv_freq[:3])
    assert build_model("RoPE theta=500k", TINY, 0).config.rope_parameters["rope_theta"] == 500_000.0


def test_an_interrupted_training_run_resumes_exactly(corpus, tmp_path, monkeypatch):
    train, valid = corpus
    (tmp_path / "a").mkdir()
    whole = train_one("0.75-RoPE", 0, train, valid, TINY, tmp_path / "a")
    import ropescope.prope.train as module

    original = module.batch_at

    def interrupt(data, seed, step, config):
        if step == 3:
            raise KeyboardInterrupt
        return original(data, seed, step, config)

    (tmp_path / "b").mkdir()
    monkeypatch.setattr(module, "batch_at", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_one("0.75-RoPE", 0, train, valid, TINY, tmp_path / "b")
    monkeypatch.setattr(module, "batch_at", original)
    resumed = train_one("0.75-RoPE", 0, train, valid, TINY, tmp_path / "b")
    assert resumed["val_perplexity"] == pytest.approx(whole["val_perplexity"], rel=1e-6)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)


def test_run_t2_summarises_and_skips_finished_runs(tmp_path):
    runs, summary = run_t2(tmp_path, TINY, seeds=2, encodings=("NoPE", "0.75-RoPE"), limit_bytes=100_000)
    assert len(runs) == 4 and set(summary.encoding) == {"NoPE", "0.75-RoPE"}
    assert (summary["count"] == 2).all() and summary["std"].notna().all()
    again, _ = run_t2(tmp_path, TINY, seeds=2, encodings=("NoPE", "0.75-RoPE"), limit_bytes=100_000)
    assert again.equals(runs)  # nothing retrained
    assert set(ENCODINGS) >= set(summary.encoding)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train-prope", "--steps", "0"], "Invalid value for '--steps'"),
        (["train-prope", "--encodings", "ALiBi"], "unknown encoding 'ALiBi'"),
        (["prope", "--p", "nan"], "p must be a fraction in [0, 1]"),
        (["prope", "--variants", "sideways"], "unknown p-RoPE variant"),
        (["prope", "--context", "40000"], "exceeds the model's context of 32768"),
    ],
)
def test_prope_commands_bad_input(capsys, tmp_path, args, fragment):
    result = run_here(capsys, *args, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_train_prope_refuses_an_existing_directory_without_resume(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    result = run_here(capsys, "train-prope", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "pass --resume to continue it")
    assert Path(tmp_path / "run").is_dir()

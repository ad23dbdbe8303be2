"""Chunked long-context profiling (pieces through the KV cache) equals the one-pass profile."""

import numpy as np
import pytest
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError


def assert_equal_profiles(a, b, rtol=1e-6):
    assert a.meta["max_seq_len"] == b.meta["max_seq_len"]
    assert a.meta["n_tokens"] == b.meta["n_tokens"]
    for tensor in "qkv":
        np.testing.assert_array_equal(a.stats[tensor].count.numpy(), b.stats[tensor].count.numpy())
        scale = float(a.stats[tensor].mean.abs().max())
        np.testing.assert_allclose(b.stats[tensor].mean.numpy(), a.stats[tensor].mean.numpy(), atol=rtol * scale)
        np.testing.assert_allclose(b.stats[tensor].max.numpy(), a.stats[tensor].max.numpy(), atol=rtol * scale)
        np.testing.assert_allclose(b.stats[tensor].m2.numpy(), a.stats[tensor].m2.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 40])
@pytest.mark.parametrize("family", ["llama", "qwen3", "phi", "cohere"])
def test_chunked_equals_unchunked_without_sliding_windows(family, chunk):
    model, tokenizer = tiny_model(family), CharTokenizer()
    whole = ropescope.profile(model, tokenizer, TEXTS, batch_size=3)
    pieces = ropescope.profile(model, tokenizer, TEXTS, batch_size=3, chunk_tokens=chunk)
    assert_equal_profiles(whole, pieces)


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "mistral"])
def test_chunked_equals_unchunked_with_sliding_windows_shorter_than_the_prompt(family):
    # windows of 5-6 tokens against prompts of up to 87: transformers' sliding-window cache layers
    # keep the window, so pieces of 7 tokens still see exactly the keys one pass sees
    model, tokenizer = tiny_model(family), CharTokenizer()
    whole = ropescope.profile(model, tokenizer, TEXTS, batch_size=2)
    pieces = ropescope.profile(model, tokenizer, TEXTS, batch_size=2, chunk_tokens=7)
    assert_equal_profiles(whole, pieces)


def test_chunked_profile_is_not_the_same_as_cutting_the_prompt():
    # guards against a chunked run that silently restarts positions or forgets the cache
    model, tokenizer = tiny_model("llama"), CharTokenizer()
    whole = ropescope.profile(model, tokenizer, TEXTS[3:4])
    text = TEXTS[3]
    pieces = [text[i : i + 20] for i in range(0, len(text), 20)]
    restarted = ropescope.profile(model, tokenizer, pieces, include_bos=False)
    assert not np.allclose(whole.stats["q"].mean.numpy(), restarted.stats["q"].mean.numpy(), atol=1e-4)


def test_chunked_real_gemma_beyond_its_sliding_window(gemma):
    model, tokenizer = gemma
    text = " ".join(ropescope.load_prompts("shakespeare"))
    whole = ropescope.profile(model, tokenizer, [text], max_tokens=700)
    assert whole.meta["max_seq_len"] == 700  # longer than the 512-token window of 15 layers
    pieces = ropescope.profile(model, tokenizer, [text], max_tokens=700, chunk_tokens=192)
    assert_equal_profiles(whole, pieces, rtol=2e-6)


def test_chunk_tokens_must_be_positive():
    with pytest.raises(RopescopeError, match="chunk_tokens"):
        ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS, chunk_tokens=0)


def test_cli_chunk_tokens_gives_the_one_pass_profile(tmp_path):
    from ropescope.cli import main

    common = ["profile", "--max-tokens", "48", "--checkpoint-every", "0", "--prompts", "italian"]
    main([*common, "--out", str(tmp_path / "whole")])
    main([*common, "--chunk-tokens", "16", "--out", str(tmp_path / "pieces")])
    whole = ropescope.load_profile(tmp_path / "whole")
    pieces = ropescope.load_profile(tmp_path / "pieces")
    assert_equal_profiles(whole, pieces, rtol=2e-6)

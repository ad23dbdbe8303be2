"""A checkpoint without a usable tokenizer is refused in one line, never profiled as unknown tokens;
``--tokenizer`` supplies one."""

from __future__ import annotations

import pytest
from cli_helpers import assert_no_output, assert_one_line_error, run_cli, run_here
from hub_stand_in import char_tokenizer

import ropescope
from ropescope.errors import ModelLoadError
from ropescope.survey import tiny_model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    tiny_model("qwen2").save_pretrained(root / "no-tokenizer")  # transformers builds an empty Qwen2 vocabulary
    tiny_model("qwen2").save_pretrained(root / "with-tokenizer")
    char_tokenizer(root / "with-tokenizer")
    return root


def test_an_empty_tokenizer_is_refused(capsys, checkpoints, tmp_path):
    with pytest.raises(ModelLoadError, match="no usable tokenizer files; pass --tokenizer"):
        ropescope.load_model(str(checkpoints / "no-tokenizer"))
    out = tmp_path / "run"
    result = run_here(capsys, "profile", str(checkpoints / "no-tokenizer"), "--out", str(out), "--max-tokens", "16")
    assert_one_line_error(result, "encodes 'The quick brown fox jumps over the lazy dog.' as 0 token(s)")
    assert_no_output(out)


def test_tokenizer_option_supplies_one(checkpoints, tmp_path):
    loaded = ropescope.load_model(str(checkpoints / "no-tokenizer"), tokenizer=str(checkpoints / "with-tokenizer"))
    ids = loaded.tokenizer("Tobe")["input_ids"]
    assert ids[0] == 1 and len(ids) == 5  # BOS, then one token per character
    out = tmp_path / "run"
    result = run_cli(
        "profile",
        str(checkpoints / "no-tokenizer"),
        "--tokenizer",
        str(checkpoints / "with-tokenizer"),
        "--out",
        str(out),
        "--max-tokens",
        "16",
    )
    assert result.returncode == 0, result.stderr
    assert (out / "profile.safetensors").is_file()


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(checkpoints):
    with pytest.raises(ModelLoadError, match="do not belong together"):
        ropescope.load_model(str(checkpoints / "no-tokenizer"), tokenizer="gemma-3-270m")

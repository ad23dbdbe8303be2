"""Image-text-to-text checkpoints (Qwen2-VL, Gemma 3 4B-27B) load from the command line like causal
LMs, and their language tower is profiled and head-scored on text prompts."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli
from hub_stand_in import char_tokenizer

import ropescope
from ropescope.survey import tiny_model


@pytest.mark.parametrize("family, command", [("qwen2_vl", "profile"), ("gemma3", "heads")])
def test_a_multimodal_checkpoint_runs_from_the_command_line(family, command, tmp_path):
    directory = tmp_path / family
    tiny_model(family).save_pretrained(directory)
    char_tokenizer(directory)
    loaded = ropescope.load_model(str(directory))
    assert type(loaded.model).__name__.endswith("ForConditionalGeneration")
    out = tmp_path / "run"
    result = run_cli(command, str(directory), "--out", str(out), "--max-tokens", "32")
    assert result.returncode == 0, result.stderr
    prof = ropescope.load_profile(out)
    assert prof.n_layers == 2 and (prof.stats["q"].count > 0).all()

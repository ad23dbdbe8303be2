"""A checkpoint whose tensors do not cover its model is refused (transformers would fill the gap with
random weights and the profile would look normal), unless the user asks for it."""

from __future__ import annotations

import json

import pytest
from hub_stand_in import char_tokenizer
from safetensors.numpy import load_file, save_file
from tiny import tiny_model

import ropescope
from ropescope.cli import main
from ropescope.errors import ModelLoadError


@pytest.fixture()
def damaged(tmp_path):
    directory = tmp_path / "ckpt"
    tiny_model("llama").save_pretrained(directory)
    char_tokenizer(directory)
    weights = load_file(str(directory / "model.safetensors"))
    del weights["model.layers.1.self_attn.q_proj.weight"]
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def test_missing_weights_are_refused(damaged):
    with pytest.raises(ModelLoadError, match=r"1 weight\(s\) missing from the checkpoint \(e.g. model.layers.1"):
        ropescope.load_model(str(damaged))
    loaded = ropescope.load_model(str(damaged), allow_missing_weights=True)
    assert loaded.anatomy.n_layers == 3


def test_config_with_more_layers_than_weights_is_refused(damaged, tmp_path, capsys):
    config = json.loads((damaged / "config.json").read_text())
    config["num_hidden_layers"] = 5
    (damaged / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", str(damaged), "--out", str(tmp_path / "run"), "--max-tokens", "8"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "does not match its model" in err and "--allow-missing-weights" in err
    assert not (tmp_path / "run").exists()

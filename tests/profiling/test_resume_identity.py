"""A resume state belongs to the weights that wrote it, not to a model name, and a damaged state is
refused: the state carries a fingerprint of the weights and a checksum."""

from __future__ import annotations

import pytest
from cli_helpers import run_main
from hub_stand_in import char_tokenizer
from tiny import tiny_model

import ropescope.profiling.resume as profile_cli  # the command imports save_state from here when it runs


def _save(directory, seed):
    model = tiny_model("llama", seed=seed)
    model.save_pretrained(directory)
    char_tokenizer(directory)


@pytest.fixture()
def interrupted(tmp_path, monkeypatch, capsys):
    """A run of the checkpoint in ``ckpt`` stopped after its first saved state."""
    _save(tmp_path / "ckpt", seed=0)
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"prompt number {i} about the sea" for i in range(6)), encoding="utf-8")
    real = profile_cli.save_state

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(profile_cli, "save_state", save_then_stop)
    argv = ["profile", str(tmp_path / "ckpt"), "--prompts", str(prompts), "--batch-size", "1"]
    argv += ["--checkpoint-every", "1", "--out", str(tmp_path / "run")]
    code, err = run_main(argv, capsys)
    assert code == 130 and "--resume" in err, err
    monkeypatch.setattr(profile_cli, "save_state", real)
    return argv, tmp_path / "run.resume" / "state.safetensors"


def test_resume_refuses_a_state_of_other_weights_behind_the_same_path(interrupted, tmp_path, capsys):
    argv, state = interrupted
    assert state.is_file()
    _save(tmp_path / "ckpt", seed=1)  # the checkpoint behind the path changed
    code, err = run_main([*argv, "--resume"], capsys)
    assert code == 1 and "belongs to another model, prompt set or options" in err, err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_damaged_state(interrupted, tmp_path, capsys):
    argv, state = interrupted
    data = bytearray(state.read_bytes())
    data[-9] ^= 0x40  # one bit of one statistic
    state.write_bytes(bytes(data))
    code, err = run_main([*argv, "--resume"], capsys)
    assert code == 1 and "failed its checksum" in err and "delete it to start over" in err, err


def test_resume_of_the_same_weights_finishes(interrupted, tmp_path, capsys):
    argv, _ = interrupted
    code, err = run_main([*argv, "--resume"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "profile.safetensors").is_file()


def test_resume_refuses_a_state_tokenised_by_other_tokenizer_files(interrupted, tmp_path, capsys):
    """The weights stay, the checkpoint's tokenizer files change: the prompts would be tokenised
    differently, so the state of the interrupted run is refused (and so with --tokenizer)."""
    import json

    argv, state = interrupted
    path = tmp_path / "ckpt" / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]  # two characters swap ids
    path.write_text(json.dumps(spec), encoding="utf-8")
    code, err = run_main([*argv, "--resume"], capsys)
    assert code == 1 and "belongs to another model, prompt set or options" in err, err
    other = tmp_path / "other-tokenizer"
    char_tokenizer(other)  # the original files, named with --tokenizer: the same ids as the first run
    (other / "config.json").write_bytes((tmp_path / "ckpt" / "config.json").read_bytes())
    code, err = run_main([*argv, "--resume", "--tokenizer", str(other)], capsys)
    assert code == 0, err

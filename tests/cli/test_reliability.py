"""Reliability: a full disk leaves nothing behind; profiles from another format version are refused."""

import errno
import importlib
import json

import numpy as np
import pytest
from saved_files import save_with_format_version
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.cli import main
from ropescope.errors import ProfileFileError

files_module = importlib.import_module("ropescope.files")


def test_disk_full_while_writing_leaves_no_output(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(files_module, "_write_safetensors", full)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--out", str(out), "--max-tokens", "16", "--checkpoint-every", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_profile_from_another_format_version_is_refused(tmp_path):
    prof = ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS)
    save_with_format_version(prof, tmp_path / "old.safetensors", "0")
    with pytest.raises(ProfileFileError, match="format version 0"):
        ropescope.load_profile(tmp_path / "old.safetensors")


def test_saved_profile_holds_no_pickle(tmp_path):
    path = ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS).save(tmp_path / "p.safetensors")
    data = path.read_bytes()
    assert b"\x80\x04\x95" not in data and b"\x80\x05\x95" not in data  # no pickle protocol 4/5 frames
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes.pop("prompt_hashes") == "U64"  # plain numbers: the statistics and the prompt hashes
    assert set(dtypes.values()) == {"F64"}
    assert np.isfinite(ropescope.load_profile(path).stats["q"].mean.numpy()).all()

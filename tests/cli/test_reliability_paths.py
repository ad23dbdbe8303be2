"""User paths mean what the user meant (``~`` expanded once, before any check; the current
directory is never replaced), and ``train-prope --overwrite`` replaces its directory only after
success; one seed draws its figure."""

from __future__ import annotations

import pytest
from cli_helpers import run_main


def test_tilde_after_equals_is_the_home_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "x").mkdir(parents=True)
    (tmp_path / "home" / "x" / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["profile", "--out=~/x", "--max-tokens", "8"], capsys)
    assert code == 1 and "already exists; pass --overwrite" in err, err
    assert (tmp_path / "home" / "x" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("out", [".", ".."])
def test_the_current_directory_is_never_the_output(tmp_path, monkeypatch, capsys, out):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code, err = run_main(["profile", "--out", out, "--overwrite", "--max-tokens", "8"], capsys)
    assert code == 1 and "holds the current directory" in err, err
    assert not [p for p in tmp_path.rglob(".*old-*")]


def test_train_overwrite_keeps_the_old_directory_until_success_and_one_seed_works(tmp_path, capsys):
    out = tmp_path / "t2"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    bad = ["train-prope", "--out", str(out), "--overwrite", "--steps", "2", "--seeds", "1", "--encodings", "NoPE"]
    code, err = run_main([*bad, "--layers", "1", "--hidden", "16", "--seq-len", "999999999"], capsys)
    assert code != 0, err
    assert (out / "precious.txt").read_text() == "keep me"  # the failed run replaced nothing
    good = [*bad, "--layers", "1", "--hidden", "16", "--seq-len", "16", "--batch", "2"]
    code, err = run_main(good, capsys)
    assert code == 0, err
    assert not (out / "precious.txt").exists() and (out / "table02_t2_from_scratch.png").is_file()
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]

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


def _tree(path):
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else b"") for p in path.rglob("*"))


@pytest.fixture(scope="module")
def saved_profiles(tmp_path_factory):
    """Two profile files of a tiny model in a folder of their own, and a fake checkpoint folder."""
    from tiny import TEXTS, CharTokenizer, tiny_model

    import ropescope

    root = tmp_path_factory.mktemp("inputs")
    model = tiny_model("gemma3")
    (root / "runs").mkdir()
    ropescope.profile(model, CharTokenizer(), TEXTS[:2]).save(root / "runs" / "a.safetensors")
    ropescope.profile(model, CharTokenizer(), TEXTS[2:4]).save(root / "runs" / "b.safetensors")
    (root / "ckpt").mkdir()
    (root / "ckpt" / "config.json").write_text("{}")
    (root / "prompts.txt").write_text("a prompt\n")
    return root


PAIR = ["{root}/runs/a.safetensors", "{root}/runs/b.safetensors"]


@pytest.mark.parametrize(
    "argv, out",
    [
        (["compare", "{root}/runs/a.safetensors", "{root}/runs/b.safetensors", "--overwrite"], "{root}/runs"),
        (["compare", "{root}/runs/a.safetensors", "{root}/runs/b.safetensors", "--overwrite"], "{root}"),
        (
            ["merge", "{root}/runs/a.safetensors", "{root}/runs/b.safetensors", "--overwrite"],
            "{root}/runs/a.safetensors",
        ),
        (["profile", "{root}/ckpt", "--overwrite"], "{root}/ckpt"),
        (["profile", "{root}/ckpt", "--overwrite"], "{root}"),
        (["heads", "{root}/ckpt", "--overwrite"], "{root}"),
        (["profile", "--prompts", "{root}/prompts.txt", "--overwrite"], "{root}"),
        (["report", "{root}/runs/a.safetensors"], "{root}/runs/a.safetensors"),
    ],
)
def test_an_output_never_replaces_an_input(saved_profiles, capsys, argv, out):
    """`--out` that is, or holds, one of the command's own inputs is refused before any work, with
    --overwrite too; nothing under the inputs changes."""
    root = saved_profiles
    before = _tree(root)
    argv = [a.format(root=root) for a in argv] + ["--out", out.format(root=root)]
    code, err = run_main(argv, capsys)
    assert code == 1 and ("is the input" in err or "holds the input" in err), err
    assert _tree(root) == before


def test_report_out_needs_overwrite_to_replace_a_file(saved_profiles, tmp_path, capsys):
    target = tmp_path / "mine.html"
    target.write_text("my notes")
    code, err = run_main(["report", str(saved_profiles / "runs" / "a.safetensors"), "--out", str(target)], capsys)
    assert code == 1 and "already exists; pass --overwrite" in err, err
    assert target.read_text() == "my notes"
    argv = ["report", str(saved_profiles / "runs" / "a.safetensors"), "--out", str(target), "--overwrite"]
    assert run_main(argv, capsys)[0] == 0 and "ropescope report" in target.read_text()

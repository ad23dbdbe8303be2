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
    for run, name in (("runA", "a"), ("runB", "b")):  # run directories, read through their profile file
        (root / run).mkdir()
        (root / run / "profile.safetensors").write_bytes((root / "runs" / f"{name}.safetensors").read_bytes())
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
        (["merge", "{root}/runA", "{root}/runB", "--overwrite"], "{root}/runA/profile.safetensors"),
        (["report", "{root}/runA", "--overwrite"], "{root}/runA/profile.safetensors"),
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


@pytest.fixture()
def checkpoint_named_like_state(tmp_path):
    """A real (tiny) checkpoint whose folder is named OUT.resume, the name of ropescope's resume state."""
    from hub_stand_in import char_tokenizer
    from tiny import tiny_model

    directory = tmp_path / "run.resume"
    tiny_model("llama").save_pretrained(directory)
    char_tokenizer(directory)
    (tmp_path / "prompts.txt").write_text("the quick brown fox\njumps over the lazy dog\n", encoding="utf-8")
    return directory


def test_a_finished_run_never_removes_an_input_named_like_its_state(checkpoint_named_like_state, capsys):
    """The model is OUT.resume: with --checkpoint-every 0 the run uses no state and leaves it whole;
    with checkpoints, ropescope refuses before any work rather than write its state into it."""
    model = checkpoint_named_like_state
    before = _tree(model)
    prompts = str(model.parent / "prompts.txt")
    argv = ["profile", str(model), "--prompts", prompts, "--out", str(model.parent / "run"), "--no-figures"]
    code, err = run_main([*argv, "--checkpoint-every", "0"], capsys)
    assert code == 0, err
    assert _tree(model) == before and (model.parent / "run" / "profile.safetensors").is_file()
    code, err = run_main([*argv, "--overwrite"], capsys)
    assert code == 1 and "is not ropescope's resume state" in err, err
    assert _tree(model) == before


def test_a_state_folder_of_someone_else_is_never_removed(tmp_path, capsys):
    """A sweep starts over by removing its old state only where ropescope's marker says it is its own."""
    from ropescope.files import STATE_MARKER, check_state_dir, claim_state_dir, release_state_dir

    foreign = tmp_path / "x.resume"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="is not ropescope's resume state"):
        check_state_dir(foreign)
    release_state_dir(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    link = tmp_path / "y.resume"
    link.symlink_to(foreign)
    with pytest.raises(Exception, match="in the way of the resume state"):
        check_state_dir(link)
    release_state_dir(link)
    assert (foreign / "notes.txt").exists()
    own = tmp_path / "z.resume"
    claim_state_dir(own)
    assert (own / STATE_MARKER).is_file()
    check_state_dir(own)
    release_state_dir(own)
    assert not own.exists()
    argv = ["sweep", "some/model", "--revisions", "main", "--out", str(tmp_path / "x"), "--max-tokens", "8"]
    code, err = run_main(argv, capsys)
    assert code == 1 and "is not ropescope's resume state" in err, err
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "command", [["profile", "--max-tokens", "8"], ["heads", "--max-tokens", "8"], ["prope", "--p", "0.5"]]
)
def test_the_lock_never_writes_through_a_planted_link(tmp_path, capsys, command):
    """`runs/.x.lock -> ../victim.txt`: refused in one line; the victim keeps its content."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ".x.lock").symlink_to(victim)
    code, err = run_main([*command, "--out", str(tmp_path / "runs" / "x")], capsys)
    assert code == 1 and "is a symbolic link; ropescope writes nothing through it" in err, err
    assert victim.read_text() == "precious" and not (tmp_path / "runs" / "x").exists()

"""Every resume hint works: a command interrupted at several points prints a command, and running
exactly that command (parsed as a shell would) finishes with the result of an uninterrupted run."""

import json
import shlex

import pandas as pd
import pytest
import torch
from cli_helpers import run_main

import ropescope
from ropescope.profiling.result import load_profile


def _printed_command(err: str) -> list[str]:
    """The argument list of the "continue with: ..." command in the one error line."""
    line = [line for line in err.splitlines() if line.startswith("error: ")][-1]
    assert "continue with: " in line, line
    words = shlex.split(line.split("continue with: ", 1)[1])
    assert words[0] == "ropescope"
    return words[1:]


def _interrupt_after(monkeypatch, module, name, calls: int):
    """Make ``module.name`` raise KeyboardInterrupt (as Ctrl-C would) once it has run ``calls`` times."""
    real = getattr(module, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        count["n"] += 1
        if count["n"] == calls:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(module, name, wrapped)
    return real


def _run_interrupted_then_resumed(argv, capsys, monkeypatch, module, name, calls):
    real = _interrupt_after(monkeypatch, module, name, calls)
    code, err = run_main(argv, capsys)
    assert code == 130, err
    monkeypatch.setattr(module, name, real)
    resumed = _printed_command(err)
    code, err = run_main(resumed, capsys)
    assert code == 0, err
    return resumed


TRAIN = ["--seeds", "1", "--steps", "40", "--encodings", "NoPE,RoPE theta=10k", "--layers", "1", "--hidden", "16"]
TRAIN += ["--seq-len", "16", "--batch", "2"]


@pytest.fixture(scope="module")
def uninterrupted_training(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2") / "run"
    from ropescope.cli import main

    main(["train-prope", "--out", str(out), *TRAIN])
    return pd.read_csv(out / "runs.csv")


@pytest.mark.parametrize("calls", [25, 70])  # inside the first model (after its checkpoint), inside the second
def test_train_prope_resumes_with_the_printed_command(uninterrupted_training, tmp_path, capsys, monkeypatch, calls):
    import ropescope.prope.train as train

    out = tmp_path / "run"
    resumed = _run_interrupted_then_resumed(
        ["train-prope", "--out", str(out), *TRAIN], capsys, monkeypatch, train, "batch_at", calls
    )
    assert "--resume" in resumed and "NoPE,RoPE theta=10k" in resumed
    runs = pd.read_csv(out / "runs.csv").sort_values(["encoding", "seed"]).reset_index(drop=True)
    expected = uninterrupted_training.sort_values(["encoding", "seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(runs, expected)


def test_train_prope_resume_refuses_other_options(tmp_path, capsys, monkeypatch):
    import ropescope.prope.train as train

    _interrupt_after(monkeypatch, train, "batch_at", 5)
    code, _ = run_main(["train-prope", "--out", str(tmp_path / "run"), *TRAIN], capsys)
    assert code == 130
    code, err = run_main(["train-prope", "--out", str(tmp_path / "run"), "--resume"], capsys)
    assert code == 1 and "was trained with --layers 1, this command gives 4" in err, err


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(p.replace("\n", " ") for p in ropescope.load_prompts("shakespeare")[:6]))
    return path


PROFILE = ["profile", "--max-tokens", "16", "--batch-size", "1", "--checkpoint-every", "2", "--no-figures"]


@pytest.fixture(scope="module")
def uninterrupted_profile(prompt_file, tmp_path_factory):
    from ropescope.cli import main

    whole = tmp_path_factory.mktemp("whole") / "run"
    main([*PROFILE, "--prompts", str(prompt_file), "--out", str(whole)])
    return load_profile(whole)


@pytest.mark.parametrize("calls", [1, 2])  # after the first saved state, after the second
def test_profile_resumes_with_the_printed_command(
    uninterrupted_profile, prompt_file, tmp_path, capsys, monkeypatch, calls
):
    import ropescope.profiling.resume as profile_cli  # where the command takes save_state from

    out = tmp_path / "resumed"
    argv = [*PROFILE, "--prompts", str(prompt_file), "--out", str(out)]
    resumed = _run_interrupted_then_resumed(argv, capsys, monkeypatch, profile_cli, "save_state", calls)
    assert resumed[-1] == "--resume"
    first, second = uninterrupted_profile, load_profile(out)
    for tensor in ("q", "k", "v"):
        torch.testing.assert_close(first.stats[tensor].mean, second.stats[tensor].mean, rtol=0, atol=0)
        torch.testing.assert_close(first.stats[tensor].count, second.stats[tensor].count, rtol=0, atol=0)
    assert first.meta["n_tokens"] == second.meta["n_tokens"]


@pytest.mark.parametrize("calls", [2, 3])  # stopped while the second / third entry finishes
def test_figures_resume_with_the_printed_command(tmp_path, capsys, monkeypatch, calls):
    import ropescope.figures.runs as runs

    out = tmp_path / "figs"
    argv = ["figures", "--only", "F2,F8,F9", "--out", str(out)]
    resumed = _run_interrupted_then_resumed(argv, capsys, monkeypatch, runs, "_render_entry", calls)
    assert resumed == [*argv, "--resume"]
    manifest = json.loads((out / runs.MANIFEST).read_text())
    assert sorted(manifest["entries"]) == ["F2", "F8", "F9"]
    assert all((out / name).is_file() for files in manifest["entries"].values() for name in files)


def test_damaged_resume_files_are_refused_naming_file_and_field(tmp_path, capsys):
    """A resume state whose header holds a string where a count belongs (under a valid checksum), and
    a runs.csv with an unknown encoding, are refused in one line naming the file and the field."""
    import json as _json

    from ropescope.errors import ProfileFileError
    from ropescope.files import write_checked
    from ropescope.hooks.stats import ChunkNormStats
    from ropescope.profiling import resume

    arrays = ChunkNormStats(1, 1, 2).to_arrays("q")
    for t in ("k", "v"):
        arrays.update(ChunkNormStats(1, 1, 2).to_arrays(t))
    meta = {"key": "k", "batches_done": "many", "max_seq_len": 3}
    path = tmp_path / "state.safetensors"
    write_checked(path, arrays, resume.FORMAT, resume.FORMAT_VERSION, _json.dumps(meta))
    with pytest.raises(ProfileFileError, match="batches_done"):
        resume.load_state(path, "k")
    out = tmp_path / "run"
    out.mkdir()
    (out / "runs.csv").write_text("encoding,seed,steps,train_loss,val_perplexity\nALiBi,0,40,1.0,2.0\n")
    code, err = run_main(["train-prope", "--out", str(out), *TRAIN, "--resume"], capsys)
    assert code == 1 and "runs.csv row 1: field 'encoding'" in err and "Traceback" not in err, err

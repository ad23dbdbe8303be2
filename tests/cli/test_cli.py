"""The command line: bad input gets one line, a non-zero exit and no output directory."""

import subprocess
import sys

import pytest
import transformers
from cli_helpers import REPO, assert_no_output, assert_one_line_error, run_cli, run_here  # noqa: F401


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["no-such-model"], "unknown model 'no-such-model'"),
        (["missing/dir/model.gguf"], "GGUF file missing/dir/model.gguf does not exist"),
        (["./missing-directory"], "unknown model './missing-directory'"),
        (["gemma-3-270m", "--max-tokens", "0"], "Invalid value for '--max-tokens'"),
        (["gemma-3-270m", "--max-tokens", "-5"], "Invalid value for '--max-tokens'"),
        (["gemma-3-270m", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["gemma-3-270m", "--prompts", "no_such_prompts.txt"], "neither a built-in set"),
        (["gemma-3-270m", "--dtype", "float8"], "'float8' is not one of 'float32', 'bfloat16', 'float16'"),
    ],
)
def test_bad_input_gets_one_line(capsys, tmp_path, args, fragment):
    out = tmp_path / "run"
    result = run_here(capsys, "profile", *args, "--out", str(out))
    assert_one_line_error(result, fragment)
    assert_no_output(out)


def test_empty_prompt_file(capsys, tmp_path):
    prompts = tmp_path / "empty.txt"
    prompts.write_text("\n\n")
    out = tmp_path / "run"
    assert_one_line_error(run_here(capsys, "profile", "--prompts", str(prompts), "--out", str(out)), "holds no prompts")
    assert_no_output(out)


def test_directory_that_is_not_a_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(run_here(capsys, "profile", str(tmp_path), "--out", str(out)), "is not a checkpoint")


def test_existing_output_directory_is_refused_without_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_one_line_error(run_here(capsys, "profile", "--out", str(out)), "already exists; pass --overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_plot_of_a_missing_or_corrupt_profile(capsys, tmp_path):
    assert_one_line_error(run_here(capsys, "plot", str(tmp_path / "nothing")), "no saved profile")
    (tmp_path / "profile.safetensors").write_bytes(b"garbage")
    assert_one_line_error(run_here(capsys, "plot", str(tmp_path)), "not a readable ropescope profile")


def test_model_without_rope_is_refused(capsys, tmp_path, gemma_dir):
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=262144, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    transformers.AutoTokenizer.from_pretrained(gemma_dir).save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "run"
    result = run_here(capsys, "profile", str(tmp_path / "gpt2"), "--out", str(out))
    assert_one_line_error(result, "has no rotary positional encoding")
    assert_no_output(out)


def test_prompt_longer_than_the_context_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    result = run_here(capsys, "profile", "--max-tokens", "40000", "--out", str(out))
    assert_one_line_error(result, "exceeds the model's context of 32768 tokens")
    assert_no_output(out)


def test_help_and_models(capsys):
    result = run_cli("--help")  # the installed command, in a process of its own
    assert result.returncode == 0 and "Usage" in result.stdout
    for command in (["profile"], ["plot"], ["models"]):
        result = run_here(capsys, *command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout
    listing = run_here(capsys, "models")
    assert listing.returncode == 0
    assert "gemma-3-270m" in listing.stdout and "installed" in listing.stdout


def test_help_imports_no_heavy_library():
    """``ropescope --help`` and every command's ``--help`` answer without importing torch,
    transformers, pandas or matplotlib (seconds of start-up): the commands import what they run when
    they run it. One process per command, as a user starts it."""
    from ropescope.cli.app import COMMANDS

    commands = [None, *COMMANDS]
    script = (
        "import sys\n"
        "from ropescope.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'pandas', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    for command in commands:
        args = [command, "--help"] if command else ["--help"]
        result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        assert "Usage" in result.stdout, command
        assert result.stdout.strip().splitlines()[-1] == "HEAVY", (command, result.stdout.splitlines()[-1])


def test_no_arguments_prints_the_help_and_no_error(capsys):
    from ropescope.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0
    assert "Usage" in captured.out + captured.err and "error" not in captured.err


def test_help_teaches_with_examples_that_parse(capsys, monkeypatch):
    """Every command's --help ends with its examples; each example's options parse against the
    command (names and types checked by click without running it); flags show no value type; the
    computed defaults are printed; --version works."""
    import shlex

    import typer

    from ropescope.cli import main
    from ropescope.cli.app import app
    from ropescope.cli.examples import EXAMPLES

    monkeypatch.setenv("COLUMNS", "250")  # one help line per option, as on a wide terminal
    group = typer.main.get_command(app)
    for name, examples in EXAMPLES.items():
        command = group.get_command(None, name)
        assert command is not None, name
        for _, line in examples:
            args = shlex.split(line)[2:]
            command.make_context(name, args)  # raises on an unknown option or a bad value
        assert _exit_code(main, [name, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Examples:" in out and examples[0][1] in " ".join(out.split())
        assert "<bool>" not in out
    assert _exit_code(main, ["profile", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "[default: (runs/MODEL)]" in text and "[default: (model context)]" in text
    assert _exit_code(main, ["--version"]) == 0 and capsys.readouterr().out.startswith("ropescope 0.")


def _exit_code(main, args) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0

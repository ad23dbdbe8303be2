"""The bad-input matrix: every command and the main Python entry points, one row per class of bad input.

Each CLI row asserts a one-line ``error:`` naming the input, a non-zero exit status, no traceback,
and nothing left behind (no output directory, no partial files, inputs untouched). Each API row
asserts a :class:`~ropescope.errors.RopescopeError` naming the input. The documentation's
Troubleshooting page is generated from these rows (``docs/hooks/generate.py``; every row on the
built page: ``tests/docs/test_site.py``); ``python tests/cli/test_bad_input_matrix.py`` prints it.
"""

from __future__ import annotations

import errno
import importlib
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli_helpers import PROGRESS_LINE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# (command, class of bad input, argv with {inputs} standing for the prepared inputs directory, message fragment)
CLI_ROWS = [
    ("profile", "unknown model name", ["profile", "no-such-model"], "unknown model 'no-such-model'"),
    ("profile", "missing path", ["profile", "{inputs}/missing-dir/"], "unknown model"),
    ("profile", "missing .gguf file", ["profile", "{inputs}/missing.gguf"], "missing.gguf does not exist"),
    ("profile", "directory that is not a checkpoint", ["profile", "{inputs}/notckpt"], "is not a checkpoint"),
    ("profile", "corrupt .gguf", ["profile", "{inputs}/garbage.gguf"], "not a GGUF file"),
    ("profile", "truncated .gguf", ["profile", "{inputs}/truncated.gguf"], "truncated or corrupt"),
    ("profile", "model without RoPE", ["profile", "{inputs}/gpt2"], "has no rotary positional encoding"),
    (
        "profile",
        "unsupported architecture",
        ["profile", "{inputs}/sparse_attention"],
        "no RoPE frequencies found for layer 0 (type 'compressed_sparse_attention')",
    ),
    ("profile", "checkpoint with its own code", ["profile", "{inputs}/remote_code"], "pass --trust-remote-code"),
    (
        "profile",
        "rope_theta that is not a number",
        ["profile", "{inputs}/theta_text"],
        "rope_parameters.rope_theta must be a finite positive number, got 'abc'",
    ),
    ("profile", "rope_theta of zero", ["profile", "{inputs}/theta_zero"], "rope_theta must be a finite positive"),
    ("profile", "unknown rope_type", ["profile", "{inputs}/rope_type"], "rope_type 'bogus' is unknown"),
    ("profile", "corrupt weights file", ["profile", "{inputs}/bad_weights"], "model.safetensors is truncated"),
    ("profile", "config field of the wrong type", ["profile", "{inputs}/layers_text"], "its config.json: Strict"),
    (
        "profile",
        "negative head count",
        ["profile", "{inputs}/heads_negative"],
        "num_attention_heads must be a positive",
    ),
    (
        "profile",
        ".bin weights that are not tensors",
        ["profile", "{inputs}/pickled"],
        "which ropescope never unpickles",
    ),
    ("profile", "attention-free architecture (Mamba)", ["profile", "{inputs}/mamba"], "'mamba' has no rotary"),
    ("profile", "empty prompt file", ["profile", "--prompts", "{inputs}/empty.txt"], "holds no prompts"),
    ("profile", "binary prompt file", ["profile", "--prompts", "{inputs}/binary.txt"], "is binary, not text"),
    ("profile", "non-UTF-8 prompt file", ["profile", "--prompts", "{inputs}/latin1.txt"], "is not UTF-8 text"),
    ("profile", "prompt path is a directory", ["profile", "--prompts", "{inputs}/notckpt"], "is a directory"),
    ("profile", "missing prompt file", ["profile", "--prompts", "{inputs}/none.txt"], "neither a built-in set"),
    ("profile", "prompts empty after tokenisation", ["profile", "--max-tokens", "1"], "no prompt has a token left"),
    ("profile", "prompt longer than the context", ["profile", "--max-tokens", "40000"], "exceeds the model's context"),
    ("profile", "zero", ["profile", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (
        "profile",
        "negative",
        ["profile", "--max-tokens", "-5"],
        "Invalid value for '--max-tokens': Input should be greater",
    ),
    ("profile", "NaN", ["profile", "--max-tokens", "nan"], "Invalid value for '--max-tokens'"),
    ("profile", "too large", ["profile", "--max-tokens", "99999999999999999999"], "exceeds the model's context"),
    ("profile", "negative", ["profile", "--checkpoint-every", "-1"], "Invalid value for '--checkpoint-every'"),
    ("profile", "zero", ["profile", "--chunk-tokens", "0"], "Invalid value for '--chunk-tokens'"),
    (
        "profile",
        "unknown option value",
        ["profile", "--dtype", "float8"],
        "'float8' is not one of 'float32', 'bfloat16', 'float16'",
    ),
    ("profile", "unknown option value", ["profile", "--on-nonfinite", "ignore"], "Invalid value for '--on-nonfinite'"),
    ("profile", "layer out of range", ["profile", "--head-layer", "99"], "--head-layer 99 is out of range"),
    (
        "profile",
        "output directory exists",
        ["profile", "--out", "{inputs}/existing"],
        "already exists; pass --overwrite",
    ),
    ("profile", "output path is a file", ["profile", "--out", "{inputs}/afile"], "exists and is not a directory"),
    ("profile", "output path inside a file", ["profile", "--out", "{inputs}/afile/run"], "which is a file"),
    (
        "profile",
        "disk fills while writing",
        ["profile", "--max-tokens", "16", "--out", "run"],
        "No space left on device",
    ),
    ("profile", "--resume with no saved state", ["profile", "--resume", "--out", "run"], "--resume: no saved state"),
    ("profile", "--rope-scaling that is not exact", ["profile", "--rope-scaling", "dynamic:2"], "is not supported"),
    ("heads", "--rope-scaling without a factor", ["heads", "--rope-scaling", "yarn"], "needs a factor"),
    ("profile", "--revision of a bundled model", ["profile", "--revision", "v1"], "--revision applies to hub ids only"),
    ("heads", "--revision that names nothing", ["heads", "org/x", "--revision", "a b"], "is not a branch, tag"),
    ("sweep", "--revisions naming nothing", ["sweep", "org/x", "--revisions", " , "], "--revisions names no revision"),
    (
        "sweep",
        "--resume with no saved state",
        ["sweep", "org/x", "--revisions", "a", "--resume", "--out", "run"],
        "--resume: no saved state",
    ),
    ("plot", "missing saved profile", ["plot", "{inputs}/missing.safetensors"], "no saved profile"),
    ("plot", "truncated saved profile", ["plot", "{inputs}/cut.safetensors"], "not a readable ropescope profile"),
    ("plot", "tampered saved profile", ["plot", "{inputs}/tampered.safetensors"], "checksum"),
    ("plot", "profile from another ropescope version", ["plot", "{inputs}/v0.safetensors"], "format version 0"),
    (
        "plot",
        "checksum-valid profile with impossible content",
        ["plot", "{inputs}/crafted.safetensors"],
        "is not a possible ropescope profile: its q statistics hold NaN",
    ),
    ("plot", "large file that is not a profile", ["plot", "{inputs}/weights.safetensors"], "is not a ropescope"),
    ("plot", "layer out of range", ["plot", "{inputs}/gemma.safetensors", "--head-layer", "99"], "--head-layer 99"),
    (
        "merge",
        "profile from another model",
        ["merge", "{inputs}/gemma.safetensors", "{inputs}/llama.safetensors", "--out", "m.safetensors"],
        "different models",
    ),
    (
        "merge",
        "truncated saved profile",
        ["merge", "{inputs}/gemma.safetensors", "{inputs}/cut.safetensors", "--out", "m.safetensors"],
        "not a readable ropescope profile",
    ),
    ("merge", "one profile only", ["merge", "{inputs}/gemma.safetensors", "--out", "m.safetensors"], "at least two"),
    (
        "merge",
        "output file exists",
        ["merge", "{inputs}/gemma.safetensors", "{inputs}/gemma.safetensors", "--out", "{inputs}/afile"],
        "already exists; pass --overwrite",
    ),
    ("heads", "unknown model name", ["heads", "no-such-model"], "unknown model 'no-such-model'"),
    ("heads", "model without RoPE", ["heads", "{inputs}/gpt2"], "has no rotary positional encoding"),
    ("heads", "empty prompt file", ["heads", "--prompts", "{inputs}/empty.txt"], "holds no prompts"),
    ("heads", "binary prompt file", ["heads", "--prompts", "{inputs}/binary.txt"], "is binary, not text"),
    ("heads", "prompt longer than the context", ["heads", "--max-tokens", "40000"], "exceeds the model's context"),
    ("heads", "zero", ["heads", "--max-offset", "0"], "Invalid value for '--max-offset'"),
    ("heads", "NaN", ["heads", "--threshold", "nan"], "Invalid value for '--threshold'"),
    ("heads", "too large", ["heads", "--threshold", "2"], "Invalid value for '--threshold'"),
    ("heads", "zero", ["heads", "--hf-fraction", "0"], "hf_fraction must be in (0, 1], got 0.0"),
    ("heads", "negative", ["heads", "--draws", "-1"], "Invalid value for '--draws'"),
    ("heads", "output path is a file", ["heads", "--out", "{inputs}/afile"], "exists and is not a directory"),
    ("head", "unknown model name", ["head", "no-such-model", "0", "0", "--prompt", "hi"], "unknown model"),
    ("head", "layer out of range", ["head", "gemma-3-270m", "99", "0", "--prompt", "hi"], "layer 99 is out of range"),
    ("head", "head out of range", ["head", "gemma-3-270m", "0", "99", "--prompt", "hi"], "head 99 is out of range"),
    (
        "head",
        "invalid option value",
        ["head", "gemma-3-270m", "0", "0", "--prompt", "hi", "--rows", "5"],
        "--rows must",
    ),
    ("head", "empty prompt", ["head", "gemma-3-270m", "0", "0", "--prompt", ""], "prompt"),
    ("prope", "unknown model name", ["prope", "no-such-model"], "unknown model 'no-such-model'"),
    ("prope", "NaN", ["prope", "--p", "nan"], "p must be a fraction in [0, 1], got nan"),
    ("prope", "too large", ["prope", "--p", "1.5"], "p must be a fraction in [0, 1], got 1.5"),
    ("prope", "unknown variant", ["prope", "--variants", "foo"], "unknown p-RoPE variant 'foo'"),
    ("prope", "zero", ["prope", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    ("prope", "too small", ["prope", "--context", "1"], "Invalid value for '--context'"),
    ("prope", "prompt longer than the context", ["prope", "--context", "40000"], "exceeds the model's context"),
    ("prope", "zero", ["prope", "--windows", "0"], "Invalid value for '--windows'"),
    ("prope", "too large", ["prope", "--band-level", "1.5"], "--band-level must be a fraction in (0, 1], got 1.5"),
    (
        "prope",
        "missing prompt file",
        ["prope", "--variants", "below-band", "--band-prompts", "{inputs}/missing.txt"],
        "neither a built-in set",
    ),
    ("prope", "empty text file", ["prope", "--text", "{inputs}/empty.txt"], "is empty"),
    ("prope", "binary text file", ["prope", "--text", "{inputs}/binary.txt"], "binary"),
    ("train-prope", "zero", ["train-prope", "--seeds", "0", "--out", "t2"], "Invalid value for '--seeds'"),
    ("train-prope", "negative", ["train-prope", "--steps", "-1", "--out", "t2"], "Invalid value for '--steps'"),
    (
        "train-prope",
        "invalid width",
        ["train-prope", "--hidden", "100", "--out", "t2"],
        "(--hidden) must be a multiple of 8",
    ),
    ("train-prope", "unknown encoding", ["train-prope", "--encodings", "foo", "--out", "t2"], "unknown encoding 'foo'"),
    ("train-prope", "output path exists", ["train-prope", "--out", "{inputs}/afile"], "already exists"),
    ("figures", "unknown figure id", ["figures", "--only", "F99"], "unknown figure id 'F99'"),
    ("figures", "unknown model name", ["figures", "--model", "no-such-model", "--only", "F3"], "unknown model"),
    ("figures", "empty prompt file", ["figures", "--prompts", "{inputs}/empty.txt"], "holds no prompts"),
    ("figures", "output path is a file", ["figures", "--only", "F2", "--out", "{inputs}/afile"], "not a directory"),
    ("figures", "--resume with no saved state", ["figures", "--only", "F2", "--resume"], "no interrupted figures run"),
    ("any", "unknown option", ["profile", "--bogus"], "No such option: --bogus"),
    (
        "profile",
        "config asking for more than its weights (memory bomb)",
        ["profile", "{inputs}/bomb"],
        "no weight has a dimension of its vocab_size",
    ),
    ("profile", "GGUF header counts larger than the file", ["profile", "{inputs}/counts.gguf"], "tensor_count is"),
    ("profile", "name with terminal escape sequences", ["profile", "no\x1b[2K\rmodel"], "no\\x1b[2K\\rmodel"),
    (
        "profile",
        "output holds the checkpoint",
        ["profile", "{inputs}/bomb", "--out", "{inputs}", "--overwrite"],
        "holds the input",
    ),
    (
        "compare",
        "checksum-valid profile with a field of the wrong type",
        ["compare", "{inputs}/gemma.safetensors", "{inputs}/wrong_type.safetensors", "--out", "c"],
        "versions must map package names",
    ),
    (
        "compare",
        "output holds an input",
        ["compare", "{inputs}/gemma.safetensors", "{inputs}/llama.safetensors", "--out", "{inputs}", "--overwrite"],
        "holds the input",
    ),
    ("report", "damaged heads.csv", ["report", "{inputs}/damaged_run"], "heads.csv row 1: field 'layer'"),
    (
        "report",
        "output is the run's own profile",
        ["report", "{inputs}/gemma.safetensors", "--out", "{inputs}/gemma.safetensors"],
        "is the input",
    ),
    (
        "report",
        "output file exists",
        ["report", "{inputs}/gemma.safetensors", "--out", "{inputs}/afile"],
        "already exists; pass --overwrite",
    ),
    (
        "train-prope",
        "--resume with other sizes",
        ["train-prope", "--out", "{inputs}/t2run", "--resume"],
        "was trained with --layers 1, this command gives 4",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, gemma_dir):
    """Every bad input of the matrix, prepared once."""
    import numpy as np
    import transformers
    from hub_stand_in import char_tokenizer
    from safetensors.numpy import save_file
    from saved_files import save_with_format_version
    from tiny import TEXTS, CharTokenizer, tiny_model

    import ropescope
    from ropescope import survey
    from ropescope.model.bundled import cache_dir

    root = tmp_path_factory.mktemp("inputs")
    (root / "empty.txt").write_text("\n\n")
    (root / "binary.txt").write_bytes(b"\xff\xfe\x00\x01garbage\x80\x00")
    (root / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (root / "notckpt").mkdir()
    (root / "notckpt" / "readme.txt").write_text("not a model")
    (root / "garbage.gguf").write_bytes(b"junk, not a GGUF file")
    (root / "truncated.gguf").write_bytes((cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf").read_bytes()[:200_000])
    (root / "afile").write_text("a file")
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("mine")
    # a checkpoint whose code would leave a marker file if it ever ran (the listing check catches it)
    (root / "remote_code").mkdir()
    config = {"model_type": "evil", "auto_map": {"AutoConfig": "evil.Config", "AutoModelForCausalLM": "evil.Model"}}
    (root / "remote_code" / "config.json").write_text(json.dumps(config))
    (root / "remote_code" / "evil.py").write_text("open(__file__ + '.EXECUTED', 'w').write('ran')\n")
    tokenizer = transformers.AutoTokenizer.from_pretrained(gemma_dir)
    gpt2 = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=262144, n_positions=64)
    transformers.GPT2LMHeadModel(gpt2).save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    # DeepSeek V4's compressed sparse attention keeps its RoPE where ropescope cannot read it
    survey.tiny_model("deepseek_v4").save_pretrained(root / "sparse_attention")
    char_tokenizer(root / "sparse_attention")

    _config_variants(root)
    mamba = transformers.MambaConfig(vocab_size=96, hidden_size=16, state_size=4, num_hidden_layers=1)
    transformers.MambaForCausalLM(mamba).save_pretrained(root / "mamba")
    tokenizer.save_pretrained(root / "mamba")

    model, _ = ropescope.load_model("gemma-3-270m")
    path = ropescope.profile(model, tokenizer, ["To be, or not to be"]).save(root / "gemma.safetensors")
    ropescope.profile(tiny_model("llama"), CharTokenizer(), TEXTS).save(root / "llama.safetensors")
    data = path.read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    tampered = bytearray(data)
    tampered[-3] ^= 0xFF
    (root / "tampered.safetensors").write_bytes(bytes(tampered))
    prof = ropescope.load_profile(path)
    save_with_format_version(prof, root / "v0.safetensors", "0")
    crafted = ropescope.load_profile(path)
    crafted.stats["q"].mean[0, 0, 0] = float("nan")
    crafted.save(root / "crafted.safetensors")  # a valid checksum over impossible content
    save_file({"w": np.zeros((1024, 1024), dtype=np.float32)}, str(root / "weights.safetensors"), {"format": "pt"})
    assert np.isfinite(prof.stats["q"].mean.numpy()).all()
    wrong = ropescope.load_profile(path)
    wrong.meta["versions"] = "x"  # a string where a mapping belongs, under a valid checksum
    wrong.save(root / "wrong_type.safetensors")
    (root / "bomb").mkdir()
    for item in Path(gemma_dir).iterdir():
        if item.name != "config.json":
            (root / "bomb" / item.name).symlink_to(item)
    config = json.loads((Path(gemma_dir) / "config.json").read_text())
    (root / "bomb" / "config.json").write_text(json.dumps({**config, "vocab_size": 10**12}))
    (root / "counts.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (10**12).to_bytes(8, "little") + bytes(80))
    (root / "damaged_run").mkdir()
    (root / "damaged_run" / "profile.safetensors").write_bytes(path.read_bytes())
    (root / "damaged_run" / "heads.csv").write_text("layer,head\nx,0\n")
    (root / "damaged_run" / "agreement.json").write_text("{}")
    (root / "t2run").mkdir()
    (root / "t2run" / "config.json").write_text(json.dumps({"layers": 1, "hidden": 128, "heads": 4}))
    return root


def _config_variants(root: Path) -> None:
    """Tiny Llama checkpoints with one bad field in config.json, and one with a damaged weights file."""
    import transformers
    from tiny import tiny_model

    model = tiny_model("llama")
    for name, top in {
        "layers_text": {"num_hidden_layers": "two"},
        "heads_negative": {"num_attention_heads": -4},
    }.items():
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({**model.config.to_dict(), **top}))
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text(model.config.to_json_string())
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 40)
    for name, edit in {
        "theta_text": {"rope_theta": "abc"},
        "theta_zero": {"rope_theta": 0},
        "rope_type": {"rope_type": "bogus"},
        "bad_weights": {},
    }.items():
        model.save_pretrained(root / name)
        config = json.loads((root / name / "config.json").read_text())
        config["rope_parameters"].update(edit)
        (root / name / "config.json").write_text(json.dumps(config))
    weights = root / "bad_weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert transformers  # the variants are read by transformers' own config loader


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in root.rglob("*")}


@pytest.mark.parametrize("command, klass, argv, fragment", CLI_ROWS, ids=[f"{r[0]}: {r[1]}" for r in CLI_ROWS])
def test_cli_bad_input(command, klass, argv, fragment, inputs, tmp_path, monkeypatch, capsys):
    from ropescope.cli import main

    if klass == "disk fills while writing":

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run"))

        monkeypatch.setattr(importlib.import_module("ropescope.files"), "_write_safetensors", full)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = listing(inputs)
    args = [a.replace("{inputs}", str(inputs)) for a in argv]
    if args[0] == "profile" and "--checkpoint-every" not in args:
        args += ["--checkpoint-every", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code not in (0, None)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("loading ", "warning: "))]
    lines = [line for line in lines if "-:--:--" not in line and "━" not in line]  # progress bars
    lines = [line for line in lines if not PROGRESS_LINE.match(line)]  # progress lines off a terminal
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert list(work.iterdir()) == [], "output left behind"
    assert listing(inputs) == before, "an input was changed"


API_ROWS = [
    ("load_model", "unknown model name", "unknown model 'no-such-model'"),
    ("load_prompts", "empty prompt file", "holds no prompts"),
    ("profile", "empty prompt list", "the prompt set is empty"),
    ("profile", "zero batch size", "batch size must be positive"),
    ("profile", "prompt longer than the context", "exceeds the model's context"),
    ("load_profile", "truncated saved profile", "not a readable ropescope profile"),
    ("Profile.merge", "profile from another model", "different models"),
    ("scan_heads", "NaN threshold", "threshold must be in (0, 1]"),
    ("p_rope", "fraction out of range", "1.5"),
    ("profile", "one string instead of a list", "pass [text] for a single prompt"),
    ("profile", "a prompt that is not a string", "prompt 1 is a int, not a string"),
    ("profile", "empty prompt", "prompt 0 is empty"),
    ("load_profile", "checksum-valid profile with impossible content", "is not a possible ropescope profile"),
]


@pytest.mark.parametrize("entry, klass, fragment", API_ROWS, ids=[f"{r[0]}: {r[1]}" for r in API_ROWS])
def test_api_bad_input(entry, klass, fragment, inputs):
    from tiny import TEXTS, CharTokenizer, tiny_model

    import ropescope
    from ropescope.errors import RopescopeError
    from ropescope.heads.scan import scan_heads
    from ropescope.prope import p_rope

    model, tok = tiny_model("llama"), CharTokenizer()
    calls = {
        ("load_model", "unknown model name"): lambda: ropescope.load_model("no-such-model"),
        ("load_prompts", "empty prompt file"): lambda: ropescope.load_prompts(str(inputs / "empty.txt")),
        ("profile", "empty prompt list"): lambda: ropescope.profile(model, tok, []),
        ("profile", "zero batch size"): lambda: ropescope.profile(model, tok, TEXTS, batch_size=0),
        ("profile", "prompt longer than the context"): lambda: ropescope.profile(model, tok, TEXTS, max_tokens=10**6),
        ("load_profile", "truncated saved profile"): lambda: ropescope.load_profile(inputs / "cut.safetensors"),
        ("Profile.merge", "profile from another model"): lambda: ropescope.load_profile(
            inputs / "gemma.safetensors"
        ).merge(ropescope.load_profile(inputs / "llama.safetensors")),
        ("scan_heads", "NaN threshold"): lambda: scan_heads(model, tok, TEXTS, threshold=math.nan),
        ("p_rope", "fraction out of range"): lambda: p_rope(model, 1.5).__enter__(),
        ("profile", "one string instead of a list"): lambda: ropescope.profile(model, tok, "To be, or not to be"),
        ("profile", "a prompt that is not a string"): lambda: ropescope.profile(model, tok, ["a", 3]),
        ("profile", "empty prompt"): lambda: ropescope.profile(model, tok, [""], batch_size=1),
        ("load_profile", "checksum-valid profile with impossible content"): lambda: ropescope.load_profile(
            inputs / "crafted.safetensors"
        ),
    }
    with pytest.raises(RopescopeError) as info:
        calls[(entry, klass)]()
    assert fragment in str(info.value) and "\n" not in str(info.value)


def markdown() -> str:
    """The troubleshooting table, from the rows above (as the docs' Troubleshooting page shows it)."""
    lines = ["| command | bad input | example | message contains |", "|---|---|---|---|"]
    for command, klass, argv, fragment in CLI_ROWS:
        example = " ".join(a.replace("{inputs}/", "") for a in argv)
        lines.append(f"| `{command}` | {klass} | `ropescope {example}` | `{fragment}` |")
    for entry, klass, fragment in API_ROWS:
        lines.append(f"| `ropescope.{entry}` (Python) | {klass} | | `{fragment}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())

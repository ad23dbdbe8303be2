"""The documented data-parallel launches of the command line: ``torchrun --nproc-per-node 2 -m
ropescope profile ...`` and ``accelerate launch --multi_gpu --num_processes 2 -m ropescope profile
...`` (gloo on CPU) write one run folder whose profile equals the single-process run's (to float
summation order); rank 0 alone holds the output lock and writes; a refusal ends every rank at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub_stand_in import char_tokenizer
from tiny import tiny_model

import ropescope

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:  # a port free now on the loopback (port 0 would reach the ranks as 0)
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launcher(name: str) -> list[str]:
    port = str(_free_port())
    if name == "torchrun":
        return [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", port,
                "-m", "ropescope"]  # fmt: skip
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_ip",
            "127.0.0.1", "--main_process_port", port, "-m", "ropescope"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("launch") / "tiny-llama"
    tiny_model("llama").save_pretrained(directory)
    char_tokenizer(directory)
    prompts = directory.parent / "prompts.txt"
    lines = [f"prompt {i}: " + "the quick brown fox jumps over the lazy dog " * (1 + i % 4) for i in range(10)]
    prompts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory, prompts


def _profile_argv(checkpoint, out: Path) -> list[str]:
    directory, prompts = checkpoint
    return [
        "profile",
        str(directory),
        "--prompts",
        str(prompts),
        "--batch-size",
        "2",
        "--no-figures",
        "--out",
        str(out),
    ]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_the_documented_launch_equals_one_process(checkpoint, tmp_path, launcher):
    if not (BIN / launcher).exists():
        pytest.skip(f"{launcher} is not installed")
    single = _run([sys.executable, "-m", "ropescope", *_profile_argv(checkpoint, tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr
    launched = _run([*_launcher(launcher), *_profile_argv(checkpoint, tmp_path / "two")], tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("wrote ") == 1  # rank 0 reports, once
    one, two = ropescope.load_profile(tmp_path / "one"), ropescope.load_profile(tmp_path / "two")
    assert one.n_tokens == two.n_tokens > 0
    for tensor in "qkv":
        np.testing.assert_array_equal(one.stats[tensor].count, two.stats[tensor].count)
        np.testing.assert_allclose(one.stats[tensor].mean, two.stats[tensor].mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(one.stats[tensor].max, two.stats[tensor].max, rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".two.")]  # no lock or temporary left


def test_a_refusal_ends_every_rank_at_once(checkpoint, tmp_path):
    """An existing --out: every rank refuses before joining the process group, with the same line."""
    if not (BIN / "torchrun").exists():
        pytest.skip("torchrun is not installed")
    (tmp_path / "taken").mkdir()
    launched = _run([*_launcher("torchrun"), *_profile_argv(checkpoint, tmp_path / "taken")], tmp_path)
    assert launched.returncode != 0
    errors = [line for line in launched.stderr.splitlines() if line.startswith("error: ")]
    expected = f"error: output directory {tmp_path / 'taken'} already exists; pass --overwrite to replace it"
    assert len(errors) == 2 and set(errors) == {expected}  # each rank's own line, the same one


@pytest.mark.parametrize("command", [["heads", "--draws", "0"], ["prope", "--p", "0.5"], ["figures", "--only", "F3"]])
def test_a_one_process_command_under_a_launcher_is_refused(checkpoint, tmp_path, command):
    """Not data-parallel: under a launcher each rank would compute everything and race to write."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    directory, prompts = checkpoint
    argv = [sys.executable, "-m", "ropescope", command[0]]
    argv += [] if command[0] == "figures" else [str(directory)]
    argv += [*command[1:], "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: this command runs in one process")
    assert not (tmp_path / "out").exists()

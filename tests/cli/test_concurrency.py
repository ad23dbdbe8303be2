"""Two runs writing one output: the second is refused at once, naming the first, and the first
finishes normally; leftovers of a run killed outright are reclaimed by the next run."""

from __future__ import annotations

import os
import subprocess
import sys

from cli_helpers import REPO


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "ropescope", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_second_writer_is_refused_and_the_first_finishes(tmp_path):
    args = ["profile", "--out", "run", "--max-tokens", "64", "--checkpoint-every", "0"]
    first = _start(args, tmp_path)
    seen = ""
    while "loading " not in seen and first.poll() is None:
        seen += first.stderr.readline()
    second = subprocess.run(
        [sys.executable, "-m", "ropescope", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"being written by another ropescope run (process {first.pid})" in lines[0]
    assert (tmp_path / "run" / "profile.safetensors").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_leftovers_of_a_killed_run_are_reclaimed(tmp_path):
    (tmp_path / ".run.partial-abc123").mkdir()
    (tmp_path / ".run.partial-abc123" / "profile.safetensors").write_bytes(b"half")
    (tmp_path / ".run.lock").write_text("999999")  # no process holds it any more
    done = subprocess.run(
        [sys.executable, "-m", "ropescope", "profile", "--out", "run", "--max-tokens", "16"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

"""A profiling run killed with SIGKILL resumes and gives exactly the uninterrupted profile; nothing
complete-looking exists after the kill."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import assert_one_line_error, run_here

import ropescope

REPO = Path(__file__).resolve().parents[2]


def _prompt_file(tmp_path):
    # 16 prompts of at most 48 tokens, one per batch, a checkpoint every 2: the kill lands mid-run
    passages = ropescope.load_prompts("shakespeare")[:8] + ropescope.load_prompts("italian")[:8]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(p.replace("\n", " ") for p in passages), encoding="utf-8")
    return path


def _command(prompts, out, *extra):
    return [
        sys.executable,
        "-m",
        "ropescope",
        "profile",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--checkpoint-every",
        "2",
        "--max-tokens",  # short forward passes and no figures: the kill and the resume are what is tested
        "48",
        "--no-figures",
        *extra,
    ]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    prompts = _prompt_file(tmp_path)
    whole = subprocess.run(_command(prompts, tmp_path / "whole"), capture_output=True, text=True, cwd=REPO, timeout=900)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    state = tmp_path / "killed.resume" / "state.safetensors"
    proc = subprocess.Popen(_command(prompts, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # polling the condition (the state appears whole: written beside, then renamed)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.is_file(), "no checkpoint was written before the kill"
    assert not out.exists()  # no complete-looking output

    resumed = subprocess.run(_command(prompts, out, "--resume"), capture_output=True, text=True, cwd=REPO, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    a = (tmp_path / "whole" / "profile.safetensors").read_bytes()
    b = (out / "profile.safetensors").read_bytes()
    assert a == b  # byte-identical
    assert not state.parent.exists()  # state removed once complete


def test_resume_without_state_and_with_foreign_state(capsys, tmp_path):
    prompts = _prompt_file(tmp_path)
    command = ["profile", "--prompts", str(prompts), "--out", str(tmp_path / "r"), "--resume"]
    assert_one_line_error(run_here(capsys, *command), "no saved state")
    state = tmp_path / "r.resume"
    state.mkdir()
    (state / "state.safetensors").write_bytes(b"not a state")
    assert_one_line_error(run_here(capsys, *command), "is unreadable")


def test_sigterm_reports_where_the_state_is(tmp_path):
    prompts = _prompt_file(tmp_path)
    out = tmp_path / "term"
    state = tmp_path / "term.resume" / "state.safetensors"
    proc = subprocess.Popen(_command(prompts, out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "continue with: ropescope profile --prompts" in stderr and stderr.rstrip().endswith("--resume")
    assert "Traceback" not in stderr
    assert not out.exists()

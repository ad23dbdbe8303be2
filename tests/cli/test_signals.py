"""Interrupting any command is never a success: SIGTERM exits 143 and Ctrl-C (SIGINT) 130, with one
line saying what was interrupted (and how to resume where that exists), and nothing half-written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import REPO


def _interrupt(args, signum, tmp_path, wait_for: str = "loading ", delay: float = 2.0):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ropescope", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    seen = ""
    deadline = time.time() + 120
    while wait_for not in seen and time.time() < deadline and proc.poll() is None:
        seen += proc.stderr.readline()
    time.sleep(delay)  # well inside the work: loading the model, scoring, training
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=300)
    return proc.returncode, seen + rest


# (command, argv, signal, what to wait for on stderr, then seconds more)
COMMANDS = [
    ("profile", ["profile", "--out", "run", "--checkpoint-every", "0"], signal.SIGTERM, "loading ", 0.0),
    ("heads", ["heads", "--out", "run"], signal.SIGTERM, "loading ", 2.0),
    (
        "head",
        ["head", "gemma-3-270m", "2", "3", "--prompt", "To be, or not to be", "--out", "run"],
        signal.SIGINT,
        "loading ",
        0.0,
    ),
    ("prope", ["prope", "--out", "run"], signal.SIGTERM, "loading ", 2.0),
    ("figures", ["figures", "--only", "HEADS,PROPE", "--out", "run"], signal.SIGINT, "", 12.0),
]


@pytest.mark.parametrize("name, args, signum, wait_for, delay", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_interrupted_command_exits_non_zero_with_one_line(name, args, signum, wait_for, delay, tmp_path):
    code, err = _interrupt(args, signum, tmp_path, wait_for, delay)
    assert code == 128 + signum, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(signum).name}" in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists() or name == "figures"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name], list(tmp_path.iterdir())


def test_interrupted_training_says_how_to_resume(tmp_path):
    args = ["train-prope", "--out", "t2", "--steps", "400", "--seeds", "1", "--encodings", "NoPE"]
    code, err = _interrupt(args, signal.SIGTERM, tmp_path, wait_for="training ", delay=3.0)
    assert code == 143, err
    assert "interrupted by SIGTERM" in err and "--resume" in err and "Traceback" not in err


def test_a_signal_caught_inside_a_string_exec_still_exits_with_its_own_status(tmp_path):
    """A signal that lands while ``dataclasses`` builds a class (an ``exec`` of a string) left CPython
    flagged to re-kill itself with SIGINT at exit under ``python -m``: exit -2 instead of 143."""
    (tmp_path / "stopped_in_exec.py").write_text(
        "import importlib\n"
        "app = importlib.import_module('ropescope.cli.app')\n"
        "app._STOPPED_BY['signal'] = 15\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt')\n"
        "except KeyboardInterrupt:\n"
        "    app._stop('no output was written')\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": f"{REPO}:{tmp_path}"}
    done = subprocess.run(
        [sys.executable, "-m", "stopped_in_exec"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert done.stderr.strip() == "error: interrupted by SIGTERM; no output was written"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_is_still_starting_is_one_line(tmp_path, signum):
    """Ctrl-C during the seconds the command spends importing torch and transformers: one line and
    130 / 143, not a KeyboardInterrupt traceback (the handlers are set before any import; torch is
    imported by the command when it runs, so the command's own handler may be the one answering)."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "ropescope", "profile", "--out", "run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    seen = ""
    while "import time:" not in seen or "torch" not in seen:  # torch is being imported now
        line = proc.stderr.readline()
        assert line, seen[-2000:]
        seen += line
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=120)
    lines = [line for line in rest.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 128 + signum, rest[-2000:]
    name = signal.Signals(signum).name
    assert lines in (
        [f"error: interrupted by {name} while starting; no output was written"],
        [f"error: interrupted by {name}; no output was written"],
    ), lines
    assert not (tmp_path / "run").exists()

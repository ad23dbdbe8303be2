"""Running the command line in a subprocess and checking its one-line errors (shared by the tests)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "ropescope", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=600,
    )


PROGRESS_LINE = re.compile(r"^[^:]+: (\d+ done|\d+/\d+ \(\d+%\)|done), ")  # ropescope.progress.LineProgress


def assert_one_line_error(result, fragment):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("loading ")]
    lines = [line for line in lines if not PROGRESS_LINE.match(line)]  # progress is not an error
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def assert_no_output(out: Path):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _main_in_process(argv, capsys):
    """Run the command line in this process: its exit status and what pytest captured meanwhile."""
    from ropescope.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, capsys.readouterr()


def run_main(argv, capsys) -> tuple[int, str]:
    """Run the command line in this process: its exit status and what it wrote to standard error."""
    code, captured = _main_in_process(argv, capsys)
    return code, captured.err


def run_here(capsys, *args):
    """The command line run in this process (no interpreter start, no torch import: seconds less
    per call), returned like :func:`run_cli`'s result: ``returncode``, ``stdout`` and ``stderr``.
    For checks of what a command prints and refuses; the tests that need a real process (signals,
    exit codes seen by a shell, the installed entry point) keep :func:`run_cli`."""
    capsys.readouterr()  # what the test printed before is not the command's
    code, captured = _main_in_process(args, capsys)
    return subprocess.CompletedProcess(["ropescope", *args], code, captured.out, captured.err)

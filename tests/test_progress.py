"""Long work is never silent: plain progress lines off a terminal, a bar on request in the API."""

import threading

import pytest
from tiny import TEXTS, CharTokenizer, tiny_model

import ropescope
from ropescope.errors import RopescopeError
from ropescope.progress import LineProgress


def test_lines_come_on_time_even_while_one_step_is_slow():
    lines = []
    three_ticks = threading.Event()  # one slow step: the timer still reports (waited for, not timed)

    def write(line):
        lines.append(line)
        if sum("1/4 (25%)" in seen for seen in lines) >= 3:
            three_ticks.set()

    with LineProgress("profiling 4 prompts", 4, write=write, every=0.05) as bar:
        bar.update(completed=1)
        three_ticks.wait(timeout=120)
        bar.update(advance=2)
    ticks = [line for line in lines[:-1] if "1/4 (25%)" in line]
    assert len(ticks) >= 3 and all("/s" in line and "left" in line for line in ticks)
    assert lines[-1].startswith("profiling 4 prompts: done, 4/4 (100%) in ")


def test_a_failed_run_gets_no_done_line():
    lines = []
    with pytest.raises(ValueError), LineProgress("work", 3, write=lines.append, every=10):
        raise ValueError("boom")
    assert lines == []


def test_api_is_quiet_by_default_and_reports_when_asked(capsys):
    model, tok = tiny_model("llama"), CharTokenizer()
    ropescope.profile(model, tok, TEXTS)
    assert capsys.readouterr().err == ""
    ropescope.profile(model, tok, TEXTS, progress=True)  # stderr is not a terminal here: lines
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("profiling 5 prompts: done, 5/5 (100%) in ")
    seen = []
    ropescope.profile(model, tok, TEXTS, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5]
    with pytest.raises(RopescopeError, match="progress must be True, False, None or a callable"):
        ropescope.profile(model, tok, TEXTS, progress="yes")


def test_command_off_a_terminal_prints_progress_lines(tmp_path, monkeypatch, capsys):
    from ropescope.cli import main

    monkeypatch.setenv("ROPESCOPE_PROGRESS_EVERY", "0.05")
    prompts = tmp_path / "p.txt"
    prompts.write_text("To be, or not to be\nthat is the question\n")
    main(["profile", "--prompts", str(prompts), "--out", str(tmp_path / "run"), "--checkpoint-every", "0"])
    err = capsys.readouterr().err
    assert "profiling 2 prompts: done, 2/2 (100%)" in err
    assert any(line.startswith("profiling 2 prompts: ") and "elapsed" in line for line in err.splitlines())

"""``ropescope figures`` runs are atomic per entry and resume after an interruption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from ropescope.cli import main
from ropescope.errors import RopescopeError
from ropescope.figures import Figure, FigureContext
from ropescope.figures.runs import MANIFEST, PROGRESS, run_figures

REPO = Path(__file__).resolve().parents[2]


def entry(name, calls, fail=None):
    def render(ctx):
        calls.append(name)
        (ctx.out / f"{name}_a.csv").write_text(name)
        if fail is not None:
            raise fail
        fig = plt.figure()
        fig.savefig(ctx.out / f"{name}_b.png")
        plt.close(fig)

    return Figure(name, name, render)


def test_interrupted_run_keeps_whole_entries_only_and_resumes(tmp_path):
    calls = []
    first = [entry("A", calls), entry("B", calls, fail=KeyboardInterrupt()), entry("C", calls)]
    with pytest.raises(KeyboardInterrupt):
        run_figures(first, FigureContext("m", tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS, "A_a.csv", "A_b.png"]  # no half of B
    state = json.loads((tmp_path / PROGRESS).read_text())
    assert state["done"] == {"A": ["A_a.csv", "A_b.png"]}
    assert not (tmp_path / MANIFEST).exists()

    calls.clear()
    second = [entry("A", calls), entry("B", calls), entry("C", calls)]
    skipped = run_figures(second, FigureContext("m", tmp_path), resume=True)
    assert skipped == ["A"] and calls == ["B", "C"]
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert sorted(manifest["entries"]) == ["A", "B", "C"]
    assert not (tmp_path / PROGRESS).exists()
    assert not list(tmp_path.glob(".partial-*"))


def test_an_only_run_keeps_the_other_entries_of_the_same_model_in_the_manifest(tmp_path):
    calls = []
    run_figures([entry("A", calls), entry("B", calls)], FigureContext("m", tmp_path))
    run_figures([entry("B", calls)], FigureContext("m", tmp_path))  # `figures --only B` into the same directory
    assert json.loads((tmp_path / MANIFEST).read_text())["entries"] == {
        "A": ["A_a.csv", "A_b.png"],
        "B": ["B_a.csv", "B_b.png"],
    }
    (tmp_path / "A_b.png").unlink()  # an entry whose files are gone is not listed again
    run_figures([entry("B", calls)], FigureContext("m", tmp_path))
    assert sorted(json.loads((tmp_path / MANIFEST).read_text())["entries"]) == ["B"]
    run_figures([entry("A", calls)], FigureContext("other-model", tmp_path))  # another key: nothing kept
    assert sorted(json.loads((tmp_path / MANIFEST).read_text())["entries"]) == ["A"]


def test_resume_refuses_another_model_or_a_missing_state(tmp_path):
    calls = []
    with pytest.raises(RopescopeError, match="no interrupted figures run"):
        run_figures([entry("A", calls)], FigureContext("m", tmp_path), resume=True)
    with pytest.raises(KeyboardInterrupt):
        run_figures([entry("A", calls), entry("B", calls, KeyboardInterrupt())], FigureContext("m", tmp_path))
    with pytest.raises(RopescopeError, match="was for 'm'"):
        run_figures([entry("A", calls)], FigureContext("other-model", tmp_path), resume=True)
    (tmp_path / PROGRESS).write_text("{not json")
    with pytest.raises(RopescopeError, match="not a readable progress file"):
        run_figures([entry("A", calls)], FigureContext("m", tmp_path), resume=True)


def test_figures_command_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import ropescope.figures as figures

    real = figures.FIGURES["F8"]
    monkeypatch.setitem(
        figures.FIGURES, "F8", Figure("F8", real.title, lambda ctx: (_ for _ in ()).throw(KeyboardInterrupt()))
    )
    argv = ["figures", "--only", "F2,F8,F9", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 130  # Ctrl-C
    assert "interrupted by SIGINT; 1 of 3 entries are complete" in err and "--resume" in err and "Traceback" not in err
    kept = (tmp_path / "fig02_decay_ones_vs_gaussian.png").stat().st_mtime_ns
    monkeypatch.setitem(figures.FIGURES, "F8", real)
    main([*argv, "--resume"])  # returns normally on success
    assert "kept 1 finished entries (F2)" in capsys.readouterr().err
    assert (tmp_path / "fig02_decay_ones_vs_gaussian.png").stat().st_mtime_ns == kept
    assert (tmp_path / "fig08_random_rope.png").is_file() and (tmp_path / MANIFEST).is_file()


def test_sigkilled_figures_run_resumes(tmp_path):
    out = tmp_path / "figs"
    command = [sys.executable, "-m", "ropescope", "figures", "--only", "F2,THEORY,F8,F9", "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / PROGRESS).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not (out / PROGRESS).exists():
        pytest.skip("the run finished before it could be killed")
    assert not (out / MANIFEST).exists()  # nothing that looks complete
    done = json.loads((out / PROGRESS).read_text())["done"]
    for files in done.values():
        assert all((out / name).is_file() for name in files)
    result = subprocess.run([*command, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"kept {len(done)} finished entries" in result.stderr
    assert sorted(json.loads((out / MANIFEST).read_text())["entries"]) == ["F2", "F8", "F9", "THEORY"]
    assert not list(out.glob(".partial-*"))


def test_every_paper_id_the_readme_names_is_accepted():
    """F11, F12, F15-F17, T4 and T5 are drawn by another entry: naming them selects that entry."""
    from ropescope.figures.registry import ALIASES, FIGURES, known_ids, select

    chosen = [f.id for f in select("F11,f12,F15,F16,F17,T4,t5,F3")]
    assert chosen == ["F10", "F7", "F14", "T3", "F3"]
    assert set(ALIASES.values()) <= set(FIGURES)
    assert all(alias in known_ids() for alias in ALIASES)


def test_resume_checks_the_checkpoint_files_the_prompt_texts_and_the_dtype(tmp_path):
    """Identity, not names: the same checkpoint path with other files, a prompt file of the same name
    with other text, or another --dtype each make the interrupted entries unusable."""
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    prompts = tmp_path / "p.txt"
    prompts.write_text("first prompt\nsecond prompt\n")
    out = tmp_path / "figs"

    def interrupted(**options):
        calls = []
        context = FigureContext(str(checkpoint), out, str(prompts), load_options=options)
        with pytest.raises(KeyboardInterrupt):
            run_figures([entry("A", calls), entry("B", calls, KeyboardInterrupt())], context)

    def resume(**options):
        context = FigureContext(str(checkpoint), out, str(prompts), load_options=options)
        return run_figures([entry("A", []), entry("B", [])], context, resume=True)

    for change, fragment in [
        (lambda: (checkpoint / "model.safetensors").write_bytes(b"new weights"), "checkpoint's files"),
        (lambda: prompts.write_text("other text\n"), "prompt texts"),
        (None, "loading options"),
    ]:
        interrupted(dtype="float32")
        if change is not None:
            change()
        with pytest.raises(RopescopeError, match=fragment):
            resume(dtype="float32" if change is not None else "bfloat16")
    interrupted(dtype="float32")
    assert resume(dtype="float32", device="cpu") == ["A"]  # the device is no part of the identity


def test_a_killed_overwrite_run_gives_the_old_output_back(tmp_path, capsys):
    """`train-prope --overwrite` sets the finished run aside; when that run is killed outright, the
    next run on the same output restores it instead of deleting it as a leftover."""
    from ropescope.files import output_lock, set_aside

    out = tmp_path / "t2"
    out.mkdir()
    (out / "runs.csv").write_text("finished results")
    set_aside(out)
    out.mkdir()
    (out / "runs.csv").write_text("half of a new run")  # then SIGKILL: no cleanup ran
    with output_lock(out):
        pass
    assert (out / "runs.csv").read_text() == "finished results"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".t2.")]
    assert "restored" in capsys.readouterr().err

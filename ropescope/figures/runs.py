"""Atomic, resumable ``ropescope figures`` runs.

Each figure entry renders into a staging directory beside the output directory; only when the entry
finished are its files renamed into place and its id recorded in the progress file
(``.ropescope-figures.json``, written atomically). A run killed part-way (Ctrl-C, SIGTERM, SIGKILL)
therefore leaves whole entries only, and ``--resume`` skips those. When every entry is done the
progress file is replaced by ``figures_manifest.json``, written last: the run's completion marker,
listing every entry and file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ropescope.errors import RopescopeError
from ropescope.figures.context import FigureContext
from ropescope.figures.registry import Figure
from ropescope.files import write_json
from ropescope.version import __version__

PROGRESS = ".ropescope-figures.json"
MANIFEST = "figures_manifest.json"


def run_key(model: str, prompts: str) -> dict:
    return {"model": model, "prompts": prompts, "ropescope": __version__}


def load_progress(out: Path, key: dict) -> dict[str, list[str]]:
    """Entries (id -> files) an interrupted run with the same model and prompts finished."""
    path = out / PROGRESS
    if not path.is_file():
        raise RopescopeError(f"--resume: no interrupted figures run in {out}/ (no {PROGRESS}); run without --resume")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        done, saved_key = dict(state["done"]), state["key"]
    except (ValueError, KeyError, TypeError):
        raise RopescopeError(f"--resume: {path} is not a readable progress file; run without --resume") from None
    if saved_key != key:
        raise RopescopeError(
            f"--resume: the interrupted run in {out}/ was for {saved_key.get('model')!r} with prompts "
            f"{saved_key.get('prompts')!r} (ropescope {saved_key.get('ropescope')}); run without --resume"
        )
    return done


def run_figures(
    figures: Sequence[Figure],
    context: FigureContext,
    *,
    resume: bool = False,
    on_start: Callable[[Figure], None] | None = None,
    on_done: Callable[[Figure], None] | None = None,
    timings: dict[str, float] | None = None,
) -> list[str]:
    """Render ``figures`` into ``context.out`` entry by entry; return the ids skipped as done.
    ``timings`` (if given) receives each rendered entry's wall time in seconds (model loading and
    the profiles it shares with later entries are counted in the first entry that needs them).

    ``context.out`` is created only when the first entry is complete, so a run that fails before
    that leaves no directory.
    """
    out = context.out
    key = run_key(context.model_name, context.prompts)
    done = load_progress(out, key) if resume else {}
    (out / MANIFEST).unlink(missing_ok=True)  # the run is incomplete until the manifest is back
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # entries a killed run left half-rendered
        shutil.rmtree(stale, ignore_errors=True)
    skipped = []
    for figure in figures:
        if figure.id in done:
            skipped.append(figure.id)
        else:
            if on_start:
                on_start(figure)
            started = time.perf_counter()
            done[figure.id] = _render_entry(figure, context)
            if timings is not None:
                timings[figure.id] = time.perf_counter() - started
            write_json(out / PROGRESS, {"key": key, "done": done})
        if on_done:
            on_done(figure)
    write_json(out / MANIFEST, {"key": key, "entries": {f.id: done[f.id] for f in figures}})
    (out / PROGRESS).unlink(missing_ok=True)
    return skipped


def _render_entry(figure: Figure, context: FigureContext) -> list[str]:
    """Render one entry into a staging directory beside ``context.out``, then rename its files in."""
    out = context.out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{figure.id}-", dir=out.parent))
    try:
        context.out = staging
        figure.render(context)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        out.mkdir(exist_ok=True)
        for name in names:
            os.replace(staging / name, out / name)
        return names
    finally:
        context.out = out
        shutil.rmtree(staging, ignore_errors=True)

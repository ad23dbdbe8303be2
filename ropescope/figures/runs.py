"""Atomic, resumable ``ropescope figures`` runs.

Each figure entry renders into a staging directory beside the output directory; only when the entry
finished are its files renamed into place and its id recorded in the progress file
(``.ropescope-figures.json``, written atomically). A run killed part-way (Ctrl-C, SIGTERM, SIGKILL)
therefore leaves whole entries only, and ``--resume`` skips those. When every entry is done the
progress file is replaced by ``figures_manifest.json``, written last: the run's completion marker,
listing every entry and file.
"""

from __future__ import annotations

import hashlib
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
from ropescope.profiling.result import prompt_hash, prompt_set_hash
from ropescope.prompts import load_prompts
from ropescope.version import __version__

PROGRESS = ".ropescope-figures.json"
MANIFEST = "figures_manifest.json"


def run_key(model: str, prompts: str, load_options: dict | None = None) -> dict:
    """What a finished entry depends on, by identity and not by name: the model name and, for a
    local checkpoint, a fingerprint of its files (names, sizes, modification times); the prompt
    texts' hash; the loading options (dtype, ...; not the device); the ropescope version. A resumed
    run keeps an entry only when all of these match."""
    options = {k: str(v) for k, v in sorted((load_options or {}).items()) if k != "device"}
    return {
        "model": model,
        "model_files": files_fingerprint(Path(model)),
        "prompts": prompts,
        "prompts_sha256": prompt_set_hash([prompt_hash(t) for t in load_prompts(prompts)]),
        "options": options,
        "ropescope": __version__,
    }


def files_fingerprint(path: Path) -> str | None:
    """sha256 (16 hex digits) over the name, size and modification time of ``path`` (a file) or of
    every file up to two levels below it (a checkpoint directory); ``None`` when it is no local path
    (a bundled model or a hub id, whose name is its identity)."""
    if not path.exists():
        return None
    entries = [path] if path.is_file() else sorted(p for p in (*path.glob("*"), *path.glob("*/*")) if p.is_file())
    digest = hashlib.sha256()
    for entry in entries:
        stat = entry.stat()
        digest.update(f"{entry.relative_to(path.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


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
    if not isinstance(saved_key, dict) or not isinstance(done, dict):
        raise RopescopeError(f"--resume: {path} is not a readable progress file; run without --resume")
    changed = [field for field in key if saved_key.get(field) != key[field]]
    if changed:
        what = {
            "model": "the model",
            "model_files": "the checkpoint's files",
            "prompts": "the prompt set",
            "prompts_sha256": "the prompt texts",
            "options": "the loading options (--dtype, ...)",
            "ropescope": "the ropescope version",
        }
        raise RopescopeError(
            f"--resume: {', '.join(what[f] for f in changed)} changed since the interrupted run in {out}/ "
            f"(it was for {str(saved_key.get('model'))!r:.80}); run without --resume"
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
    key = run_key(context.model_name, context.prompts, context.load_options)
    done = load_progress(out, key) if resume else {}
    earlier = _earlier_entries(out, key)  # an --only run keeps the other entries of the same model and prompts
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
    entries = {**earlier, **{f.id: done[f.id] for f in figures}}
    write_json(out / MANIFEST, {"key": key, "entries": dict(sorted(entries.items()))})
    (out / PROGRESS).unlink(missing_ok=True)
    return skipped


def _earlier_entries(out: Path, key) -> dict:
    """The entries of ``out``'s manifest whose files are all still there, when it was written for
    the same ``key`` (model, prompts, dtype); none otherwise."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        entries = manifest["entries"] if manifest.get("key") == key else {}
        return {i: files for i, files in entries.items() if all((out / name).is_file() for name in files)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


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

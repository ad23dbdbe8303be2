"""Frequency usage and positional heads across a model's published training checkpoints.

Pythia, OLMo, SmolLM and others publish intermediate checkpoints as revisions of one hub
repository (``step1000``, ``stage1-step5000-tokens21B``, ...). :func:`sweep_revisions` loads each
named revision in turn (``load_model(model, revision=r)``), runs the head scan (which profiles q
and k on the way) on the same prompts, and keeps the numbers of a ``train-prope`` snapshot
(:func:`ropescope.dynamics.snapshots.scan_numbers`), one row per revision:

- ``revision``, ``step`` (the last number in the revision's name, e.g. 3000 for ``step3000``;
  empty when the name holds none) and ``n_tokens`` (tokens counted per tensor);
- ``q_slowest``, ``k_slowest``, ``q_fastest``, ``k_fastest``: share of the query / key chunk-norm
  in the slowest / fastest quarter of the chunks, mean over layers (0.25 = no preference);
- ``previous_token``, ``diagonal``: the largest mean attention of any head on offset 1 / 0;
- ``n_positional``: heads at or above the scan's threshold (0.5) on one offset.

With a ``state`` directory the sweep is resumable: each finished revision's row and profile are
written there atomically, and a later call with the same model, revisions, prompts and options
reuses them instead of loading that revision again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ropescope.dynamics.snapshots import scan_numbers
from ropescope.errors import RopescopeError
from ropescope.files import atomic_path, name_part
from ropescope.heads.scan import scan_heads
from ropescope.model.loading import load_model
from ropescope.profiling.result import Profile, load_profile

COLUMNS = [
    "revision",
    "step",
    "n_tokens",
    "q_slowest",
    "k_slowest",
    "q_fastest",
    "k_fastest",
    "previous_token",
    "diagonal",
    "n_positional",
]
STATE_FORMAT = 1


@dataclass
class SweepResult:
    """``table``: one row per revision, in the order given (columns in the module docstring);
    ``profiles``: each revision's q/k profile (``Profile``), by revision."""

    table: pd.DataFrame
    profiles: dict[str, Profile] = field(default_factory=dict)


def step_of(revision: str) -> int | None:
    """The training step a revision's name gives: the number after ``step`` (``step3000`` -> 3000,
    OLMo's ``stage1-step5000-tokens21B`` -> 5000), else its last number, else None."""
    after_step = re.findall(r"step[-_]?(\d+)", revision, flags=re.IGNORECASE)
    numbers = after_step or re.findall(r"\d+", revision)
    return int(numbers[-1]) if numbers else None


def sweep_revisions(
    model: str,
    revisions: list[str],
    texts: list[str],
    *,
    max_tokens: int | None = None,
    state: str | Path | None = None,
    progress: Callable[[int, str], None] | None = None,
    **load_options,
) -> SweepResult:
    """Scan ``model`` at each of ``revisions`` (hub branches, tags or commits) on ``texts``; see the
    module docstring. ``load_options`` go to :func:`~ropescope.model.load_model` (dtype, device,
    offline, ...); ``progress(done, revision)`` is called after each revision. Each model is
    released before the next is loaded, so memory holds one checkpoint at a time."""
    revisions = [r.strip() for r in revisions if r and r.strip()]
    if not revisions:
        raise RopescopeError("name at least one revision to sweep")
    if len(set(revisions)) != len(revisions):
        raise RopescopeError(f"a revision is named twice in {', '.join(revisions)}")
    if "revision" in load_options:
        raise RopescopeError("give the revisions to sweep as a list, not as one revision")
    state = Path(state) if state is not None else None
    if state is not None:
        _open_state(state, _key(model, revisions, texts, max_tokens, load_options))
    rows, profiles = [], {}
    for done, revision in enumerate(revisions, start=1):
        kept = _kept(state, done, revision)
        if kept is None:
            loaded = load_model(model, revision=revision, **load_options)
            report = scan_heads(loaded, loaded.tokenizer, texts, max_tokens=max_tokens, model_id=loaded.name)
            prof = report.profile
            row = {"revision": revision, "step": step_of(revision), "n_tokens": prof.n_tokens, **scan_numbers(report)}
            del loaded, report
            gc.collect()
            if state is not None:
                stem = state / _stem(done, revision)
                prof.save(stem.with_suffix(".safetensors"))
                with atomic_path(stem.with_suffix(".json")) as tmp:  # the row last: it marks the revision done
                    tmp.write_text(json.dumps(row), encoding="utf-8")
        else:
            row, prof = kept
        rows.append(row)
        profiles[revision] = prof
        if progress is not None:
            progress(done, revision)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["step"] = table["step"].astype("Int64")
    return SweepResult(table, profiles)


def _stem(index: int, revision: str) -> str:
    return f"{index:04d}-{name_part(revision)}"


def _key(model, revisions, texts, max_tokens, load_options) -> dict:
    prompts = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
    where = {k: v for k, v in sorted(load_options.items()) if k not in ("device", "device_map", "offline")}
    return {
        "format": STATE_FORMAT,
        "model": model,
        "revisions": revisions,
        "prompts_sha256": prompts,
        "max_tokens": max_tokens,
        "options": where,
    }


def _open_state(state: Path, key: dict) -> None:
    """Start or continue the state in ``state``: refused when it belongs to another sweep."""
    path = state / "sweep.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RopescopeError(f"resume state {path} is damaged ({exc}); delete {state} to start over") from None
        if saved != key:
            differs = sorted(k for k in key if saved.get(k) != key[k]) if isinstance(saved, dict) else ["all"]
            raise RopescopeError(
                f"resume state in {state} belongs to another sweep (its {', '.join(differs)} differ); "
                f"delete {state} to start over"
            )
        return
    state.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(key), encoding="utf-8")


def _kept(state: Path | None, index: int, revision: str) -> tuple[dict, Profile] | None:
    """A finished revision's row and profile from the state, or None."""
    if state is None:
        return None
    stem = state / _stem(index, revision)
    row_path, profile_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not (row_path.is_file() and profile_path.is_file()):
        return None
    try:
        row = json.loads(row_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RopescopeError(f"resume state {row_path} is damaged ({exc}); delete {state} to start over") from None
    if not isinstance(row, dict) or row.get("revision") != revision or set(row) != set(COLUMNS):
        raise RopescopeError(f"resume state {row_path} is not a row of revision {revision!r}; delete {state}")
    return row, load_profile(profile_path)

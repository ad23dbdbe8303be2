"""Read a run directory back into report data.

``ropescope profile`` writes ``profile.safetensors`` (and ``attention.json`` with ``--report``);
``ropescope heads`` adds ``heads.csv``, ``agreement.json`` (with the scan's threshold),
``causal.csv`` and ``attention.json`` (attention of every head on the first prompt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ropescope.errors import RopescopeError, RunFileError
from ropescope.profiling.result import load_profile
from ropescope.records import check_record, read_csv
from ropescope.report.content import report_data
from ropescope.report.schemas import AGREEMENT, check_attention, check_causal_table, check_heads_table

# every file of a run directory that reading it back reads: an output that is one of them is refused
RUN_FILES_READ = ("profile.safetensors", "heads.csv", "agreement.json", "causal.csv", "attention.json")


def run_files_read(run: Path) -> list[Path]:
    """The files :func:`read_run` reads of ``run`` (a directory, or a profile file on its own)."""
    folder = run if run.is_dir() else run.parent
    return [run, *(folder / name for name in RUN_FILES_READ)] if run.is_dir() else [run]


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RunFileError(f"{path} is not readable JSON ({type(exc).__name__})") from None


def read_causal(path: Path, n_layers: int, n_heads: int) -> pd.DataFrame:
    """A causal-test table (``causal.csv``), checked (:func:`ropescope.report.schemas.check_causal_table`)."""
    return check_causal_table(read_csv(path), path, n_layers, n_heads)


def read_run(run: str | os.PathLike) -> dict:
    """Report data of a run directory (or of a ``profile.safetensors`` file on its own)."""
    run = Path(run)
    if not run.exists():
        raise RopescopeError(f"run directory {run} does not exist")
    profile_path = run / "profile.safetensors" if run.is_dir() else run
    if not profile_path.is_file():
        raise RopescopeError(
            f"{run} holds no profile.safetensors: give a directory written by 'ropescope profile' or 'ropescope heads'"
        )
    folder = profile_path.parent
    profile = load_profile(profile_path)
    sizes = int(profile.meta["n_layers"]), int(profile.meta["n_heads"])
    heads = agreement = causal = attention = None
    if (folder / "heads.csv").is_file():
        path = folder / "heads.csv"
        heads = check_heads_table(read_csv(path), path, *sizes, int(profile.meta["n_kv_heads"]))
    if (folder / "agreement.json").is_file():
        agreement = check_record(_json(folder / "agreement.json"), AGREEMENT, folder / "agreement.json")
    if (folder / "causal.csv").is_file():
        causal = read_causal(folder / "causal.csv", *sizes)
    if (folder / "attention.json").is_file():
        attention = check_attention(_json(folder / "attention.json"), folder / "attention.json", *sizes)
    if heads is not None and agreement is None:
        raise RopescopeError(f"{folder} has heads.csv but no agreement.json: the head scan is incomplete")
    return report_data(
        profile,
        heads=heads,
        agreement=agreement,
        causal=causal,
        attention=attention,
        threshold=(agreement or {}).get("threshold"),
    )

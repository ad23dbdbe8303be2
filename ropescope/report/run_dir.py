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

from ropescope.errors import RopescopeError
from ropescope.profiling.result import load_profile
from ropescope.report.content import report_data


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RopescopeError(f"{path} is not readable JSON ({type(exc).__name__})") from None


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, keep_default_na=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RopescopeError(f"{path} is not a readable CSV table ({type(exc).__name__})") from None


def read_causal(path: Path) -> pd.DataFrame:
    """A causal-test table (``causal.csv``) with its ``chunks`` column as text ("" for none zeroed)."""
    causal = _csv(path)
    if "chunks" in causal:
        causal["chunks"] = causal["chunks"].fillna("").astype(str)
    return causal


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
    heads = _csv(folder / "heads.csv") if (folder / "heads.csv").is_file() else None
    agreement = _json(folder / "agreement.json") if (folder / "agreement.json").is_file() else None
    causal = read_causal(folder / "causal.csv") if (folder / "causal.csv").is_file() else None
    attention = _json(folder / "attention.json") if (folder / "attention.json").is_file() else None
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

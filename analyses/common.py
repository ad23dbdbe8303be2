"""Shared by the analysis scripts: the profile of a model on a prompt set, computed once per run.

Each script takes ``--model`` (default: the bundled Gemma 3 270M), ``--prompts`` (default:
``shakespeare``) and ``--out`` (default: ``figures/``), and writes its figure as PNG and PDF with
the plotted numbers as CSV beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ropescope
from ropescope.models import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


def arguments(description: str, **extra) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", default="shakespeare")
    parser.add_argument("--out", type=Path, default=REPO / "figures")
    for name, default in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args()


def cached_profile(model: str, prompts: str) -> ropescope.Profile:
    """Load ``runs/<model>-<prompts>/profile.safetensors`` or compute and save it."""
    path = REPO / "runs" / f"{Path(model).name}-{Path(prompts).stem}" / "profile.safetensors"
    if path.is_file():
        return ropescope.load_profile(path)
    loaded, tokenizer = ropescope.load_model(model)
    result = ropescope.profile(loaded, tokenizer, ropescope.load_prompts(prompts), model_id=model, prompt_set=prompts)
    result.save(path)
    return result


def stem(out: Path, name: str, model: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}_{Path(model).name}"

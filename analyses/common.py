"""Shared by the analysis scripts: ``run("F3")`` renders one entry of :mod:`ropescope.figures`.

Every script takes ``--model`` (default: the bundled Gemma 3 270M), ``--prompts`` (default:
``shakespeare``) and ``--out`` (default: ``figures/`` of the repository) and writes PNG, PDF and
the plotted numbers as CSV. ``ropescope figures`` runs all of them in one process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ropescope.figures import FIGURES, FigureContext
from ropescope.model import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


def run(figure_id: str) -> None:
    figure = FIGURES[figure_id]
    parser = argparse.ArgumentParser(description=f"{figure.id}: {figure.title}")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", default="shakespeare")
    parser.add_argument("--out", type=Path, default=REPO / "figures")
    args = parser.parse_args()
    context = FigureContext(args.model, args.out, args.prompts)
    figure.render(context)
    for note in context.notes:
        print(f"note: {note}")
    print(f"{figure.id} written to {args.out}/")

"""Figures stage: every figure and table of the paper for one model, as resumable runs.

- :mod:`~ropescope.figures.context`: the model, profiles and head scan one run shares;
- :mod:`~ropescope.figures.entries`: one function per figure or table;
- :mod:`~ropescope.figures.registry`: :data:`FIGURES` (id -> entry) and :func:`select`;
- :mod:`~ropescope.figures.runs`: :func:`run_figures`, entry by entry, atomically, resumable.
"""

from ropescope.figures.context import FigureContext
from ropescope.figures.registry import FIGURES, Figure, select
from ropescope.figures.runs import MANIFEST, PROGRESS, run_figures

__all__ = ["FIGURES", "MANIFEST", "PROGRESS", "Figure", "FigureContext", "run_figures", "select"]

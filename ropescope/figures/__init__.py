"""Figures stage: every figure and table of the paper for one model, as resumable runs.

- :mod:`~ropescope.figures.context`: the model, profiles and head scan one run shares;
- :mod:`~ropescope.figures.entries`: one function per figure or table;
- :mod:`~ropescope.figures.registry`: :data:`FIGURES` (id -> entry) and :func:`select`;
- :mod:`~ropescope.figures.runs`: :func:`run_figures`, entry by entry, atomically, resumable.
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "FIGURES": "ropescope.figures.registry",
    "Figure": "ropescope.figures.registry",
    "FigureContext": "ropescope.figures.context",
    "MANIFEST": "ropescope.figures.runs",
    "PROGRESS": "ropescope.figures.runs",
    "run_figures": "ropescope.figures.runs",
    "select": "ropescope.figures.registry",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.figures.context import FigureContext
    from ropescope.figures.registry import FIGURES, Figure, select
    from ropescope.figures.runs import MANIFEST, PROGRESS, run_figures

__all__ = ["FIGURES", "MANIFEST", "PROGRESS", "Figure", "FigureContext", "run_figures", "select"]

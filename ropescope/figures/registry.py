"""The registry of every figure and table of the paper (``ropescope figures``, ``analyses/``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ropescope.errors import RopescopeError

if TYPE_CHECKING:
    from ropescope.figures.context import FigureContext


@dataclass(frozen=True)
class Figure:
    """One entry: its paper id, a title, and what draws it: the name of a function in
    :mod:`ropescope.figures.entries` (imported when first drawn, so listing the ids imports no
    plotting or model code), or the function itself."""

    id: str
    title: str
    entry: str | Callable[[FigureContext], None]

    @property
    def render(self) -> Callable[[FigureContext], None]:
        if callable(self.entry):
            return self.entry
        return getattr(importlib.import_module("ropescope.figures.entries"), self.entry)


FIGURES = {
    f.id: f
    for f in [
        Figure("F2", "decay of all-ones vs Gaussian q, k", "fig_f2"),
        Figure("F3", "query/key usage per layer", "fig_f3"),
        Figure("F4", "usage per head of the layer with a positional head", "fig_f4"),
        Figure("F5", "attention of the strongest diagonal / previous-token heads", "fig_f5"),
        Figure("F6", "per-token chunk norms of those heads", "fig_f6"),
        Figure("F7", "trigger-token head (apostrophe-like): attention, logits (F12), chunk norms (F17)", "fig_f7"),
        Figure("F8", "Random RoPE", "fig_f8"),
        Figure("F9", "one fixed Gaussian pair", "fig_f9"),
        Figure("F10", "second family (SmolLM2-135M): F3 and F4", "fig_f10"),
        Figure("F13", "value usage per layer", "fig_f13"),
        Figure("F14", "per positional head: query and key chunk norms and attention (F15, F16)", "fig_f14"),
        Figure("F18", "a semantic head's chunk norms", "fig_f18"),
        Figure("F19", "usage across domains and their similarity", "fig_f19"),
        Figure("T2", "p-RoPE trained from scratch", "fig_t2"),
        Figure("T3", "Cauchy-Schwarz tables and their figure (T4, T5)", "fig_t3"),
        Figure("THEORY", "P3.1, P5.2, T5.3, T6.1", "fig_theory"),
        Figure("HEADS", "head classes, positional vs high-frequency, causal test", "fig_heads"),
        Figure("PROPE", "p-RoPE at inference (perplexity)", "fig_prope"),
    ]
}


# paper ids drawn by another entry: F11 with F10 (SmolLM2), F12 and F17 with F7 (trigger head),
# F15 and F16 with F14 (positional heads), T4 and T5 with T3 (Cauchy-Schwarz tables)
ALIASES = {"F11": "F10", "F12": "F7", "F15": "F14", "F16": "F14", "F17": "F7", "T4": "T3", "T5": "T3"}


def known_ids() -> str:
    """Every id ``--only`` accepts, for help texts and errors."""
    aliases = ", ".join(f"{alias} (in {entry})" for alias, entry in ALIASES.items())
    return f"{', '.join(FIGURES)}; also {aliases}"


def markdown_table() -> str:
    """The table of figure ids on the docs' reproduction page (the same list ``figures --help`` prints)."""
    drawn_by: dict[str, list[str]] = {}
    for alias, entry in ALIASES.items():
        drawn_by.setdefault(entry, []).append(alias)
    lines = ["| id | also selected by | what it draws |", "|---|---|---|"]
    for figure in FIGURES.values():
        lines.append(f"| {figure.id} | {', '.join(drawn_by.get(figure.id, [])) or '-'} | {figure.title} |")
    return "\n".join(lines) + "\n"


def select(only: str | None) -> list[Figure]:
    """The figures named in ``only`` (comma list of ids, case-insensitive, each once; a paper id
    drawn by another entry, see :data:`ALIASES`, selects that entry), or all."""
    if only is None or only == "":
        return list(FIGURES.values())
    chosen: list[Figure] = []
    for name in (x.strip().upper() for x in only.split(",") if x.strip()):
        name = ALIASES.get(name, name)
        if name not in FIGURES:
            raise RopescopeError(f"unknown figure id {name!r}; known: {known_ids()}")
        if FIGURES[name] not in chosen:
            chosen.append(FIGURES[name])
    if not chosen:
        raise RopescopeError(f"--only {only!r} names no figure id; known: {known_ids()}")
    return chosen

"""Figures stage: matplotlib figures of profiles, heads, p-RoPE and the theory, in one style.

Each function returns a ``matplotlib.figure.Figure``; :func:`save_figure` writes PNG and PDF.
:mod:`~ropescope.plots.style` (colours, heat maps, saving), then one module per topic:
:mod:`~ropescope.plots.usage` (F3, F4, F13), :mod:`~ropescope.plots.heads` (F5-F7, F12, F14-F18,
head scatter, causal test), :mod:`~ropescope.plots.prope` (p-RoPE, T2),
:mod:`~ropescope.plots.theory` (F2, F8, F9, propositions), :mod:`~ropescope.plots.domains` (F19).
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "attention_figure": "ropescope.plots.heads",
    "causal_figure": "ropescope.plots.heads",
    "chunk_norms_figure": "ropescope.plots.heads",
    "decay_figure": "ropescope.plots.theory",
    "domains_figure": "ropescope.plots.domains",
    "fixed_pair_figure": "ropescope.plots.theory",
    "head_usage_figure": "ropescope.plots.usage",
    "heads_scatter_figure": "ropescope.plots.heads",
    "layer_usage_figure": "ropescope.plots.usage",
    "logits_figure": "ropescope.plots.heads",
    "prope_figure": "ropescope.plots.prope",
    "random_rope_figure": "ropescope.plots.theory",
    "save_figure": "ropescope.plots.style",
    "t2_figure": "ropescope.plots.prope",
    "theory_figure": "ropescope.plots.theory",
    "write_profile_figures": "ropescope.plots.usage",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.plots.domains import domains_figure
    from ropescope.plots.heads import (
        attention_figure,
        causal_figure,
        chunk_norms_figure,
        heads_scatter_figure,
        logits_figure,
    )
    from ropescope.plots.prope import prope_figure, t2_figure
    from ropescope.plots.style import save_figure
    from ropescope.plots.theory import decay_figure, fixed_pair_figure, random_rope_figure, theory_figure
    from ropescope.plots.usage import head_usage_figure, layer_usage_figure, write_profile_figures

__all__ = [
    "attention_figure",
    "causal_figure",
    "chunk_norms_figure",
    "decay_figure",
    "domains_figure",
    "fixed_pair_figure",
    "head_usage_figure",
    "heads_scatter_figure",
    "layer_usage_figure",
    "logits_figure",
    "prope_figure",
    "random_rope_figure",
    "save_figure",
    "t2_figure",
    "theory_figure",
    "write_profile_figures",
]

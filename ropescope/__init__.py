"""ropescope: how a pretrained RoPE language model uses each rotary frequency.

Quick start::

    import ropescope

    lm = ropescope.load_model("gemma-3-270m")  # model, tokenizer and its RoPE anatomy, read once
    prof = ropescope.profile(lm, lm.tokenizer, ropescope.load_prompts("shakespeare")[:8])
    prof.frame()  # tidy DataFrame: tensor, layer, head, chunk, frequency, mean_norm, ...
    fig = ropescope.plots.layer_usage_figure(prof)  # F3: usage of every frequency chunk per layer
    heads = ropescope.scan_heads(lm, lm.tokenizer, ropescope.load_prompts("shakespeare")[:4])
    heads.table.head()  # one row per head: offset scores, class, high-frequency share
    with ropescope.p_rope(lm, 0.75):  # the slowest quarter of the chunks stops rotating
        nll = ropescope.perplexity(lm, lm.tokenizer, ropescope.load_text("heldout")[:2000])["nll"]

The package follows the pipeline, one folder per stage: :mod:`ropescope.model` (load) ->
:mod:`ropescope.hooks` (observe, intervene) -> :mod:`ropescope.profiling` (reduce, Profile) ->
:mod:`ropescope.heads` and :mod:`ropescope.prope` (analyses; :mod:`ropescope.theory` beside them) ->
:mod:`ropescope.plots` and :mod:`ropescope.figures` -> :mod:`ropescope.cli`. Everything a notebook
needs is here under a short name; ``ropescope.plots`` and ``ropescope.figures`` load on first use.
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes
from ropescope.errors import RopescopeError
from ropescope.version import __version__

# name -> the module that defines it; imported on first use, so ``import ropescope`` (and the command
# line's start, where Ctrl-C must already be handled) costs no torch or transformers import
_WHERE = {
    "HeadReport": "ropescope.heads",
    "HeadView": "ropescope.heads",
    "cauchy_schwarz_table": "ropescope.heads",
    "causal_test": "ropescope.heads",
    "head_view": "ropescope.heads",
    "scan_heads": "ropescope.heads",
    "search_trigger_heads": "ropescope.heads",
    "capture": "ropescope.hooks",
    "intervene": "ropescope.hooks",
    "zero_chunks": "ropescope.hooks",
    "LoadedModel": "ropescope.model",
    "ModelAnatomy": "ropescope.model",
    "RopeGeometry": "ropescope.model",
    "checkpoint_dir": "ropescope.model",
    "inspect_model": "ropescope.model",
    "load_model": "ropescope.model",
    "read_geometry": "ropescope.model.geometry",
    "rope_scaling": "ropescope.model.rope_scaling",
    "Profile": "ropescope.profiling",
    "load_profile": "ropescope.profiling",
    "profile": "ropescope.profiling",
    "summary_text": "ropescope.profiling",
    "load_prompts": "ropescope.prompts",
    "load_text": "ropescope.prompts",
    "ablate_chunks": "ropescope.prope",
    "p_rope": "ropescope.prope",
    "perplexity": "ropescope.prope",
    "prope_table": "ropescope.prope",
    "sweep_revisions": "ropescope.dynamics",
}
# ``ropescope.plots``, ``ropescope.figures`` and ``ropescope.theory`` (any submodule) load on first use too
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, submodules=("plots", "figures", "theory"))

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.dynamics import sweep_revisions
    from ropescope.heads import (
        HeadReport,
        HeadView,
        cauchy_schwarz_table,
        causal_test,
        head_view,
        scan_heads,
        search_trigger_heads,
    )
    from ropescope.hooks import capture, intervene, zero_chunks
    from ropescope.model import LoadedModel, ModelAnatomy, RopeGeometry, checkpoint_dir, inspect_model, load_model
    from ropescope.model.geometry import read_geometry
    from ropescope.model.rope_scaling import rope_scaling
    from ropescope.profiling import Profile, load_profile, profile, summary_text
    from ropescope.prompts import load_prompts, load_text
    from ropescope.prope import ablate_chunks, p_rope, perplexity, prope_table


__all__ = [
    "HeadReport",
    "HeadView",
    "LoadedModel",
    "ModelAnatomy",
    "Profile",
    "RopeGeometry",
    "RopescopeError",
    "__version__",
    "ablate_chunks",
    "capture",
    "cauchy_schwarz_table",
    "causal_test",
    "checkpoint_dir",
    "head_view",
    "inspect_model",
    "intervene",
    "load_model",
    "load_profile",
    "load_prompts",
    "load_text",
    "p_rope",
    "perplexity",
    "profile",
    "prope_table",
    "read_geometry",
    "rope_scaling",
    "scan_heads",
    "search_trigger_heads",
    "summary_text",
    "sweep_revisions",
    "zero_chunks",
]

"""Analysis: what happens when RoPE frequencies are removed (p-RoPE, the paper's Section 6.1 and Appendix D).

- :mod:`~ropescope.prope.frequencies`: the p-RoPE variants' frequencies from the model's own;
- :mod:`~ropescope.prope.interventions`: :func:`p_rope` and :func:`ablate_chunks` on a loaded model;
- :mod:`~ropescope.prope.perplexity`: perplexity and the p-RoPE table of a pretrained model;
- :mod:`~ropescope.prope.train`: T2, small models trained from scratch with each encoding.
"""

from ropescope.prope.frequencies import VARIANTS, apply_p_rope, check_p, p_rope_frequencies, paper_inv_freq
from ropescope.prope.interventions import ablate_chunks, p_rope
from ropescope.prope.perplexity import perplexity, prope_table, token_windows

__all__ = [
    "VARIANTS",
    "ablate_chunks",
    "apply_p_rope",
    "check_p",
    "p_rope",
    "p_rope_frequencies",
    "paper_inv_freq",
    "perplexity",
    "prope_table",
    "token_windows",
]

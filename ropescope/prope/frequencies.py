"""p-RoPE frequencies (the paper's Section 6.1 and Appendix D): which chunks keep rotating, and how fast.

``p`` in [0, 1] is the fraction of a head's ``r/2`` chunks that keep rotating; ``n_keep =
int(p * r/2)`` as in the paper's ``apply_p_rope``. Variants:

- ``p`` (the paper's p-RoPE): the fastest ``n_keep`` chunks keep their frequencies, the slowest
  ``r/2 - n_keep`` get frequency 0 (never rotate). p = 1 is RoPE, p = 0 is NoPE.
- ``reversed`` (T2's ``RoPE_reversed``): the fastest ``r/2 - n_keep`` chunks get frequency 0, the
  slowest ``n_keep`` keep theirs.
- ``partial`` (T2's ``RoPE_partial``, classic partial rotary): the first ``n_keep`` chunks rotate
  with the schedule of a head whose rotary dim is ``2 * n_keep``: chunk ``k`` gets the frequency
  the model's own schedule has at fractional index ``k * (r/2) / n_keep`` (log-linear
  interpolation; for a plain ``theta^(-2k/r)`` schedule that is exactly ``theta^(-k/n_keep)``), so the
  kept chunks span the full range from fastest to slowest; the rest do not rotate. The pairing of
  dims stays the model's own.

Frequencies always start from the model's own ``inv_freq`` (per layer type).
:mod:`~ropescope.prope.interventions` applies them to a loaded model.
"""

from __future__ import annotations

import numpy as np
import torch

from ropescope.errors import RopescopeError
from ropescope.model.geometry import rotate

VARIANTS = ("p", "reversed", "partial")


def check_p(p: float, variant: str = "p") -> None:
    if variant not in VARIANTS:
        raise RopescopeError(f"unknown p-RoPE variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise RopescopeError(f"p must be a fraction in [0, 1], got {p}")


def p_rope_frequencies(inv_freq, p: float, variant: str = "p") -> np.ndarray:
    """The chunk frequencies (rad/token, float64) of ``variant`` at fraction ``p``."""
    check_p(p, variant)
    g = np.asarray(inv_freq, dtype=np.float64)
    n = len(g)
    keep = int(p * n)
    out = np.zeros(n)
    if variant == "p":
        out[:keep] = g[:keep]
    elif variant == "reversed":
        out[n - keep :] = g[n - keep :]
    elif keep > 0:  # partial
        positions = np.arange(keep) * n / keep
        positive = g > 0
        out[:keep] = np.exp(np.interp(positions, np.nonzero(positive)[0], np.log(g[positive])))
        exact = positions == np.round(positions)  # integer indices: the model's own value, bit for bit
        out[:keep][exact] = g[positions[exact].astype(int)]
    return out


def paper_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """``theta^(-2k/head_dim)`` for ``k < head_dim/2``: the schedule of the paper's JAX code."""
    return 1.0 / theta ** (2.0 * np.arange(head_dim // 2) / head_dim)


def apply_p_rope(
    x: torch.Tensor,
    positions: torch.Tensor,
    inv_freq,
    p: float = 1.0,
    variant: str = "p",
    layout: str = "halves",
) -> torch.Tensor:
    """Rotate ``x[..., S, r]`` at ``positions`` with the p-RoPE frequencies of ``inv_freq``."""
    freqs = torch.as_tensor(p_rope_frequencies(inv_freq, p, variant), dtype=torch.float64)
    return rotate(x, positions, freqs, layout).to(x.dtype)

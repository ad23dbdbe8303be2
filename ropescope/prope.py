"""p-RoPE (PAPER_SPEC section 5) and frequency-band interventions on a loaded model.

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ropescope.capture import capture
from ropescope.errors import RopescopeError
from ropescope.rope import RopeGeometry, chunk_dims, chunk_pair_indices, read_geometry, rotate

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


def _angles_editor(geometry: RopeGeometry, frequencies: dict[int, np.ndarray]):
    """``edit_angles`` for :func:`capture`: cos/sin of ``frequencies[layer]`` in the model's layout."""
    first, second = chunk_pair_indices(geometry.rotary_dim, geometry.layout)
    order = np.argsort(first + second)  # dim -> chunk, for either layout
    dim_chunk = torch.as_tensor(np.concatenate([np.arange(len(first))] * 2)[order])

    def edit(layer, cos, sin, positions):
        if layer not in frequencies:
            return cos, sin
        scaling = geometry.layers[layer].attention_scaling
        freq = torch.as_tensor(frequencies[layer], dtype=torch.float32, device=cos.device)[dim_chunk.to(cos.device)]
        angles = positions[..., None].float() * freq
        return (angles.cos() * scaling).to(cos.dtype), (angles.sin() * scaling).to(sin.dtype)

    return edit


@contextlib.contextmanager
def p_rope(model, p: float, variant: str = "p", layers: Iterable[int] | None = None):
    """Inside the block, ``layers`` (default: all) of ``model`` use p-RoPE ``variant`` at ``p``.

    The model's own buffers are untouched; on exit it computes exactly what it did before.
    """
    check_p(p, variant)
    geometry = read_geometry(model)
    chosen = range(geometry.n_layers) if layers is None else list(layers)
    for layer in chosen:
        if not 0 <= layer < geometry.n_layers:
            raise RopescopeError(f"layer {layer} is out of range: the model has layers 0..{geometry.n_layers - 1}")
    frequencies = {i: p_rope_frequencies(geometry.frequencies(i), p, variant) for i in chosen}
    with capture(model, geometry, verify_geometry=False, tensors=(), edit_angles=_angles_editor(geometry, frequencies)):
        yield


def chunk_zeroer(
    dims: np.ndarray, targets: dict[tuple[int, int], Sequence[int]], kind: str = "q", n_heads: int | None = None
):
    """An ``edit_q`` (``kind="q"``) or ``edit_k`` (``"k"``, the query head's KV head) for
    :func:`capture` that zeroes chunks of chosen ``(layer, query head)`` pairs; ``n_heads`` (query
    heads of the model) is needed for ``"k"`` only, to find the KV head."""

    def edit(layer, x):
        hits = [(h, c) for (lay, h), c in targets.items() if lay == layer and len(c)]
        if not hits:
            return x
        x = x.clone()
        for head, chunks in hits:
            index = head if kind == "q" else head // (n_heads // x.shape[1])
            x[:, index][..., dims[np.asarray(chunks)].ravel()] = 0
        return x

    return edit


@contextlib.contextmanager
def ablate_chunks(model, targets: dict[tuple[int, int], Sequence[int]], tensors: tuple[str, ...] = ("q", "k")):
    """Inside the block, zero chunks of q (query head) and k (its KV head) of chosen heads.

    ``targets`` maps ``(layer, query head)`` to chunk indices (0 = fastest). Zeroing a chunk of q
    removes exactly that chunk's term from the head's logits; zeroing it in k also affects every
    query head that shares the KV head (GQA). Use ``tensors=("q",)`` to touch one head only.
    """
    geometry = read_geometry(model)
    n_heads = model.config.get_text_config().num_attention_heads
    for (layer, head), chunks in targets.items():
        if not 0 <= layer < geometry.n_layers or not 0 <= head < n_heads:
            raise RopescopeError(f"head ({layer}, {head}) is out of range")
        if any(not 0 <= c < geometry.n_chunks for c in chunks):
            raise RopescopeError(f"chunks must be in 0..{geometry.n_chunks - 1}, got {list(chunks)}")
    dims = chunk_dims(geometry)

    with capture(
        model,
        geometry,
        verify_geometry=False,
        tensors=(),
        edit_q=chunk_zeroer(dims, targets, "q", n_heads) if "q" in tensors else None,
        edit_k=chunk_zeroer(dims, targets, "k", n_heads) if "k" in tensors else None,
    ):
        yield

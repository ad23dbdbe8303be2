"""p-RoPE and chunk ablation applied to a loaded model at inference, as context managers built on
:func:`~ropescope.hooks.intervene`: the model's own buffers are untouched, and on exit it computes
exactly what it did before."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ropescope.errors import RopescopeError
from ropescope.hooks import intervene, zero_chunks
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import RopeGeometry, chunk_dims, chunk_pair_indices
from ropescope.prope.frequencies import check_p, p_rope_frequencies


def _angles_editor(geometry: RopeGeometry, frequencies: dict[int, np.ndarray]):
    """``edit_angles`` for :func:`~ropescope.hooks.intervene`: cos/sin of ``frequencies[layer]``
    (rad/token per chunk) in the model's pair layout."""
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
    geometry = inspect_model(model).geometry
    chosen = range(geometry.n_layers) if layers is None else list(layers)
    for layer in chosen:
        if not 0 <= layer < geometry.n_layers:
            raise RopescopeError(f"layer {layer} is out of range: the model has layers 0..{geometry.n_layers - 1}")
    frequencies = {i: p_rope_frequencies(geometry.frequencies(i), p, variant) for i in chosen}
    with intervene(model, edit_angles=_angles_editor(geometry, frequencies)):
        yield


@contextlib.contextmanager
def ablate_chunks(model, targets: dict[tuple[int, int], Sequence[int]], tensors: tuple[str, ...] = ("q", "k")):
    """Inside the block, zero chunks of q (query head) and k (its KV head) of chosen heads.

    ``targets`` maps ``(layer, query head)`` to chunk indices (0 = fastest). Zeroing a chunk of q
    removes exactly that chunk's term from the head's logits; zeroing it in k also affects every
    query head that shares the KV head (GQA). Use ``tensors=("q",)`` to touch one head only.
    """
    anatomy = inspect_model(model)
    geometry, n_heads = anatomy.geometry, anatomy.n_heads
    for (layer, head), chunks in targets.items():
        if not 0 <= layer < geometry.n_layers or not 0 <= head < n_heads:
            raise RopescopeError(f"head ({layer}, {head}) is out of range")
        if any(not 0 <= c < geometry.n_chunks for c in chunks):
            raise RopescopeError(f"chunks must be in 0..{geometry.n_chunks - 1}, got {list(chunks)}")
    dims = chunk_dims(geometry)

    with intervene(
        model,
        edit_q=zero_chunks(dims, targets, "q", n_heads) if "q" in tensors else None,
        edit_k=zero_chunks(dims, targets, "k", n_heads) if "k" in tensors else None,
    ):
        yield

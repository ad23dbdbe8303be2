"""Intervening: replace a layer's pre-RoPE query or key, or its rotation angles, inside a block.

``with intervene(model, edit_q=..., edit_k=..., edit_angles=...):`` every forward pass inside the
block uses the edits; on exit the model computes exactly what it did before. ``edit_q(layer, q)``
and ``edit_k(layer, k)`` receive the pre-RoPE ``[batch, heads, tokens, dims]`` tensor (after any
QK-norm) and return its replacement, which the model then rotates; ``edit_angles(layer, cos, sin,
positions)`` returns replacement ``cos, sin`` (other frequencies, as p-RoPE does). p-RoPE, chunk
ablation and the causal test's check are built on this; :func:`zero_chunks` makes the editor that
zeroes chosen chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ropescope.hooks.rope_call import RopeCallHooks
from ropescope.model.anatomy import ModelAnatomy


class Intervention(RopeCallHooks):
    """Hooks that edit q, k or the angles at every layer's RoPE call. Use through :func:`intervene`."""

    def __init__(
        self,
        anatomy: ModelAnatomy,
        *,
        edit_q: Callable | None = None,
        edit_k: Callable | None = None,
        edit_angles: Callable | None = None,
    ):
        super().__init__(anatomy)
        self.edit_q, self.edit_k, self.edit_angles = edit_q, edit_k, edit_angles

    def at_nope(self, layer, kind, x):
        """A NoPE layer: its q and k are edited as they are made; there are no angles to edit."""
        edit = self.edit_q if kind == "q" else self.edit_k
        return edit(layer, x) if edit is not None else x

    def at_rope_one(self, layer, kind, x, cos, sin, rotate_one):
        """Families that rotate q and k in separate calls: each is edited in its own call."""
        edit = self.edit_q if kind == "q" else self.edit_k
        if edit is not None:
            x = edit(layer, x)
        if self.edit_angles is not None:
            cos, sin = self.edit_angles(layer, cos, sin, self._positions)
        return rotate_one(x, cos, sin)

    def at_rope(self, layer, q, k, cos, sin, rotate):
        if self.edit_q is not None:
            q = self.edit_q(layer, q)
        if self.edit_k is not None:
            k = self.edit_k(layer, k)
        if self.edit_angles is not None:
            cos, sin = self.edit_angles(layer, cos, sin, self._positions)
        return rotate(q, k, cos, sin)


def zero_chunks(dims, targets: dict[tuple[int, int], Sequence[int]], kind: str = "q", n_heads=None):
    """An ``edit_q`` (``kind="q"``) or ``edit_k`` (``"k"``: the query head's KV head) for
    :func:`intervene` that zeroes the chunks ``targets[(layer, query head)]`` (indices into ``dims``,
    the ``[chunks, 2]`` head dims of every chunk, or a mapping from layer to its own ``dims`` where
    layers differ in head size); ``n_heads`` (query heads) is needed for ``"k"``."""

    def edit(layer, x):
        hits = [(h, c) for (lay, h), c in targets.items() if lay == layer and len(c)]
        if not hits:
            return x
        own = dims[layer] if isinstance(dims, dict) else dims
        x = x.clone()
        for head, chunks in hits:
            index = head if kind == "q" else head // (n_heads // x.shape[1])
            x[:, index][..., own[np.asarray(chunks)].ravel()] = 0
        return x

    return edit

"""The causal test of the frequency explanation (the paper's Section 5): zero chunks of a positional
head's query and measure how much of its attention on its offset survives."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ropescope.errors import PromptError
from ropescope.heads.defaults import ABLATE_CHUNKS, CAUSAL_DRAWS
from ropescope.heads.scores import HeadScoreReducer
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import chunk_dims
from ropescope.model.loading import tokenizer_of
from ropescope.profiling.run import profile
from ropescope.prompts import check_texts


def causal_test(
    model,
    tokenizer,
    texts: Sequence[str],
    heads: Sequence[tuple[int, int, int]],
    *,
    n_chunks: int = ABLATE_CHUNKS,
    draws: int = CAUSAL_DRAWS,
    seed: int = 0,
    max_tokens: int | None = None,
) -> pd.DataFrame:
    """Zero ``n_chunks`` chunks of a head's query and measure its attention on its offset.

    ``heads`` lists ``(layer, head, offset)``. Conditions: ``none``, ``fastest`` (chunks
    0..n-1), ``slowest`` (the last n) and ``random`` (``draws`` draws of n distinct chunks).
    Zeroing a chunk of the query removes exactly that chunk's term from this head's logits and
    touches no other head (a shared GQA key is left alone); the head's own attention depends only on
    its q and k at its layer, so the score is recomputed from them within one forward pass.
    Returns one row per head and condition: ``score`` and ``change`` against ``none``.

    ``n_chunks`` above half of the fewest chunks a chosen head has (a small head: GLM-4 at head dim
    16 has 4 chunks) is lowered to that half, with a warning, so that the fastest and slowest sets
    never overlap; below 1 is refused.
    """
    texts = check_texts(texts)
    anatomy = inspect_model(model)
    geometry = anatomy.geometry
    n_total = min((geometry.layer_chunks(layer) for layer, _, _ in heads), default=geometry.n_chunks)
    if n_chunks < 1:
        raise PromptError(f"n_chunks must be at least 1, got {n_chunks}")
    half = max(1, n_total // 2)
    if n_chunks > half:
        warnings.warn(
            f"zeroing {half} chunks instead of {n_chunks} in the causal test: the heads tested have {n_total} "
            f"chunks, and the fastest and slowest {half} must not overlap",
            stacklevel=2,
        )
        n_chunks = half

    def conditions_of(n_total: int) -> list[tuple[str, np.ndarray]]:
        """The chunk sets zeroed on a head with ``n_total`` chunks (the same draws for every layer of that size)."""
        rng = np.random.default_rng(seed)
        return [
            ("none", np.array([], dtype=int)),
            ("fastest", np.arange(n_chunks)),
            ("slowest", np.arange(n_total - n_chunks, n_total)),
        ] + [(f"random {d + 1}", np.sort(rng.choice(n_total, n_chunks, replace=False))) for d in range(draws)]

    conditions = conditions_of(geometry.n_chunks)
    rules, n_heads = anatomy.logit_rules, anatomy.n_heads
    max_offset = max(offset for _, _, offset in heads) if heads else 1
    reducers = {
        (layer, head, name): HeadScoreReducer(geometry, rules, n_heads, max(1, max_offset), layers={layer})
        for layer, head, _ in heads
        for name, _ in conditions
    }
    dims = {layer: chunk_dims(geometry, layer) for layer, _, _ in heads}
    chunks_of = {layer: dict(conditions_of(geometry.layer_chunks(layer))) for layer, _, _ in heads}

    def on_qk(layer, q_rot, k_rot, mask):
        for (lay, head, name), reducer in reducers.items():
            if lay != layer:
                continue
            q = q_rot[0].float().clone()
            chunks = chunks_of[layer][name]
            if len(chunks):
                q[head][:, dims[layer][chunks].ravel()] = 0.0
            reducer.add(layer, q, k_rot[0].float())

    on_qk.whole_prompts = True  # head scores: one prompt per forward pass
    profile(anatomy, tokenizer_of(model, tokenizer), texts, reducers=[on_qk], tensors=(), max_tokens=max_tokens)
    rows = []
    for layer, head, offset in heads:
        base = reducers[(layer, head, "none")].arrays.offset_scores()[layer, head, offset]
        for name, chunks in chunks_of[layer].items():
            score = reducers[(layer, head, name)].arrays.offset_scores()[layer, head, offset]
            rows.append(
                {
                    "layer": layer,
                    "head": head,
                    "offset": offset,
                    "condition": name,
                    "chunks": " ".join(map(str, chunks)),
                    "score": float(score),
                    "change": float(score - base),
                }
            )
    return pd.DataFrame(rows)

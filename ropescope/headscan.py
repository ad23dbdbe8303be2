"""Find positional and semantic heads, explain them by frequency, and test it causally.

:func:`scan_heads` runs a prompt set once (one prompt per forward pass) and returns a
:class:`HeadReport`: a table with one row per (layer, query head) holding its attention-offset
scores, class, high-frequency usage and chunk attribution (columns documented on
:func:`head_table`). :func:`causal_test` zeroes chunks of a head's query and measures its score.

Classes (``threshold`` = 0.5 by default, a majority of the attention mass):

=================  ============================================================
diagonal           mean attention on offset 0 >= threshold
previous-token     mean attention on offset 1 >= threshold
positional-other   mean attention on one offset d in 2..K >= threshold
bos-sink           mean attention on the first token >= threshold
semantic/mixed     none of the above
=================  ============================================================

At most one class can pass a threshold above 0.5 since a row's attention sums to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ropescope.adapters import text_config
from ropescope.attention import logit_rules
from ropescope.errors import PromptError, UnsupportedModelError
from ropescope.heads import HeadArrays, HeadScoreReducer
from ropescope.profile import Profile
from ropescope.profiler import profile
from ropescope.prope import chunk_zeroer
from ropescope.rope import chunk_dims, read_geometry

POSITIONAL = ("diagonal", "previous-token", "positional-other")
CLASS_ORDER = ("diagonal", "previous-token", "positional-other", "bos-sink", "semantic/mixed")


@dataclass
class HeadReport:
    """The head table, the raw sums behind it, and the chunk-norm profile of the same run."""

    table: pd.DataFrame
    arrays: HeadArrays
    profile: Profile
    max_offset: int
    threshold: float
    hf_fraction: float

    def agreement(self) -> dict:
        return agreement(self.table)


def n_fast_chunks(n_chunks: int, hf_fraction: float) -> int:
    """How many of the fastest chunks count as "high frequency" (at least one)."""
    return max(1, int(round(hf_fraction * n_chunks)))


def scan_heads(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_tokens: int | None = None,
    max_offset: int = 8,
    threshold: float = 0.5,
    hf_fraction: float = 0.125,
    model_id: str | None = None,
    prompt_set: str = "custom",
    progress: Callable[[int], None] | None = None,
) -> HeadReport:
    """Score, explain and classify every head of ``model`` over ``texts`` in one pass."""
    if max_offset < 1:
        raise PromptError(f"max_offset must be at least 1, got {max_offset}")
    if not 0 < threshold <= 1:
        raise PromptError(f"threshold must be in (0, 1], got {threshold}")
    if not 0 < hf_fraction <= 1:
        raise PromptError(f"hf_fraction must be in (0, 1], got {hf_fraction}")
    geometry = read_geometry(model)
    _require_full_heads(model, geometry)
    rules = logit_rules(model, geometry)
    reducer = HeadScoreReducer(geometry, rules, int(text_config(model).num_attention_heads), max_offset)
    prof = profile(
        model,
        tokenizer,
        texts,
        max_tokens=max_tokens,
        batch_size=1,
        geometry=geometry,
        model_id=model_id,
        prompt_set=prompt_set,
        progress=progress,
        on_qk=reducer,
        tensors=("q", "k"),
    )
    if reducer.arrays.offset_rows.sum() == 0:
        raise PromptError("no prompt is longer than one token, so no attention offset exists")
    table = head_table(reducer.arrays, prof, threshold, hf_fraction)
    return HeadReport(table, reducer.arrays, prof, max_offset, threshold, hf_fraction)


def _require_full_heads(model, geometry) -> None:
    """Head scores need the whole head vector at RoPE (Phi passes only the rotary part)."""
    if geometry.rotary_dim < geometry.head_dim and text_config(model).model_type == "phi":
        raise UnsupportedModelError(
            "head scores need the unrotated dims of a partial-rotary head, which Phi does not pass "
            "to apply_rotary_pos_emb; frequency profiles work for Phi, head scores do not yet"
        )


def hf_scores(prof: Profile, hf_fraction: float) -> np.ndarray:
    """``[L, H]`` share of each head's q-k chunk-norm product in the fastest chunks.

    Product per chunk = mean ||q chunk|| of the query head times mean ||k chunk|| of its KV head
    (over the profiled tokens); the share is the fastest ``n_fast_chunks`` chunks' sum over all.
    """
    mq = prof.stats["q"].mean.numpy()
    mk = prof.stats["k"].mean.numpy()
    group = mq.shape[1] // mk.shape[1]
    product = mq * np.repeat(mk, group, axis=1)
    fast = n_fast_chunks(product.shape[-1], hf_fraction)
    return product[..., :fast].sum(-1) / product.sum(-1)


def head_table(arrays: HeadArrays, prof: Profile, threshold: float, hf_fraction: float) -> pd.DataFrame:
    """One row per (layer, head), sorted by class then score.

    Columns: ``layer``, ``head``, ``kv_head`` (0-based); ``offset_0`` .. ``offset_K`` and ``sink``
    (mean attention); ``class``, ``score`` (the mean attention that decided the class, or the
    largest one for semantic/mixed), ``target`` (the preferred offset, ``sink``);
    ``positional_score`` (largest offset score); ``hf_score`` (see :func:`hf_scores`);
    ``attr_hf_share`` (share of the positive per-chunk logit advantage of the target over the
    other keys that comes from the fastest chunks); ``attr_top_chunks`` (the three chunks with the
    largest advantage); ``target_logit`` and ``other_logit`` (mean logit on the target and mean over
    the other visible keys).
    """
    offsets, sink = arrays.offset_scores(), arrays.sink_scores()
    n_layers, n_heads, n_off = offsets.shape
    hf = hf_scores(prof, hf_fraction)
    target_attr, other_attr = arrays.target_attribution()
    target_logit = arrays.target_logits()
    pass_other = HeadArrays._mean(arrays.other_pass_sum, arrays.target_rows[:, None, :])
    fast = n_fast_chunks(target_attr.shape[-1], hf_fraction)
    group = n_heads // prof.stats["k"].mean.shape[1]
    rows = []
    for layer in range(n_layers):
        for head in range(n_heads):
            off = np.nan_to_num(offsets[layer, head], nan=0.0)
            s = float(np.nan_to_num(sink[layer, head]))
            cls, score, target = _classify(off, s, threshold)
            advantage = target_attr[layer, head, target] - other_attr[layer, head, target]
            positive = np.clip(np.nan_to_num(advantage), 0, None)
            row = {"layer": layer, "head": head, "kv_head": head // group}
            row.update({f"offset_{d}": float(off[d]) for d in range(n_off)})
            row.update(
                sink=s,
                **{"class": cls},
                score=score,
                target="sink" if target == n_off else f"offset {target}",
                positional_score=float(off.max()),
                hf_score=float(hf[layer, head]),
                attr_hf_share=float(positive[:fast].sum() / positive.sum()) if positive.sum() > 0 else 0.0,
                attr_top_chunks=" ".join(str(c) for c in np.argsort(-np.nan_to_num(advantage))[:3]),
                target_logit=float(target_logit[layer, head, target]),
                other_logit=float(np.nansum(other_attr[layer, head, target]) + pass_other[layer, head, target]),
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    table["class"] = pd.Categorical(table["class"], CLASS_ORDER, ordered=True)
    return table.sort_values(["class", "score"], ascending=[True, False]).reset_index(drop=True)


def _classify(offsets: np.ndarray, sink: float, threshold: float) -> tuple[str, float, int]:
    """(class, score, target index: offset d, or len(offsets) for the sink)."""
    if offsets[0] >= threshold:
        return "diagonal", float(offsets[0]), 0
    if offsets[1] >= threshold:
        return "previous-token", float(offsets[1]), 1
    if len(offsets) > 2 and offsets[2:].max() >= threshold:
        d = 2 + int(np.argmax(offsets[2:]))
        return "positional-other", float(offsets[d]), d
    if sink >= threshold:
        return "bos-sink", sink, len(offsets)
    candidates = np.append(offsets, sink)
    best = int(np.argmax(candidates))
    return "semantic/mixed", float(candidates[best]), best


def agreement(table: pd.DataFrame) -> dict:
    """How well "positional by attention" matches "uses the highest frequencies" (the paper's claim).

    ``spearman``: rank correlation over all heads between ``positional_score`` and ``hf_score``;
    ``n_positional``: heads classified diagonal, previous-token or positional-other;
    ``precision_at_n``: the share of those heads that are among the ``n_positional`` heads with
    the highest ``hf_score`` (NaN when no head is positional).
    """
    positional = table["class"].isin(POSITIONAL)
    n = int(positional.sum())
    spearman = float(table["positional_score"].rank().corr(table["hf_score"].rank()))
    if n == 0:
        return {"spearman": spearman, "n_positional": 0, "precision_at_n": float("nan")}
    top = set(table.nlargest(n, "hf_score").index)
    hits = sum(1 for i in table.index[positional] if i in top)
    return {"spearman": spearman, "n_positional": n, "precision_at_n": hits / n}


def causal_test(
    model,
    tokenizer,
    texts: Sequence[str],
    heads: Sequence[tuple[int, int, int]],
    *,
    n_chunks: int = 8,
    draws: int = 5,
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
    """
    geometry = read_geometry(model)
    _require_full_heads(model, geometry)
    n_total = geometry.n_chunks
    if not 0 < n_chunks <= n_total:
        raise PromptError(f"n_chunks must be in 1..{n_total}, got {n_chunks}")
    rng = np.random.default_rng(seed)
    conditions: list[tuple[str, np.ndarray]] = [
        ("none", np.array([], dtype=int)),
        ("fastest", np.arange(n_chunks)),
        ("slowest", np.arange(n_total - n_chunks, n_total)),
    ] + [(f"random {d + 1}", np.sort(rng.choice(n_total, n_chunks, replace=False))) for d in range(draws)]
    rules = logit_rules(model, geometry)
    n_heads = int(text_config(model).num_attention_heads)
    max_offset = max(offset for _, _, offset in heads) if heads else 1
    reducers = {
        (layer, head, name): HeadScoreReducer(geometry, rules, n_heads, max(1, max_offset), layers={layer})
        for layer, head, _ in heads
        for name, _ in conditions
    }
    dims = _chunk_dims(geometry)
    chunks_of = dict(conditions)

    def on_qk(layer, q_rot, k_rot, mask):
        for (lay, head, name), reducer in reducers.items():
            if lay != layer:
                continue
            q = q_rot[0].float().clone()
            chunks = chunks_of[name]
            if len(chunks):
                q[head][:, dims[chunks].ravel()] = 0.0
            reducer.add(layer, q, k_rot[0].float())

    profile(
        model,
        tokenizer,
        texts,
        max_tokens=max_tokens,
        batch_size=1,
        geometry=geometry,
        on_qk=on_qk,
        tensors=(),
    )
    rows = []
    for layer, head, offset in heads:
        base = reducers[(layer, head, "none")].arrays.offset_scores()[layer, head, offset]
        for name, chunks in conditions:
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


def _chunk_dims(geometry) -> np.ndarray:
    """``[C, 2]``: the two head dims of every chunk."""
    return chunk_dims(geometry)


def zero_query_chunks(dims: np.ndarray, targets: dict[tuple[int, int], Sequence[int]]):
    """``edit_q`` for :func:`ropescope.capture.capture`: zero chunks of chosen (layer, head) queries."""
    return chunk_zeroer(dims, targets, "q")

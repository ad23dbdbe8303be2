"""Find positional and semantic heads, explain them by frequency, and test it causally.

:func:`scan_heads` runs a prompt set once (one prompt per forward pass) and returns a
:class:`HeadReport`: a table with one row per (layer, query head) holding its attention-offset
scores, class, high-frequency usage and chunk attribution (columns documented on
:func:`head_table`). :mod:`~ropescope.heads.causal` tests the frequency explanation causally.

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

import html
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ropescope.errors import PromptError
from ropescope.heads.by_position import PositionHeadArrays, PositionHeadReducer, log_distances
from ropescope.heads.defaults import HF_FRACTION, MAX_OFFSET, THRESHOLD
from ropescope.heads.gate import GATE_TOKENS, check_attention_rule
from ropescope.heads.scores import HeadArrays, HeadScoreReducer
from ropescope.hooks.position import position_edges
from ropescope.model.anatomy import inspect_model
from ropescope.model.loading import tokenizer_of
from ropescope.profiling.bands import quarters
from ropescope.profiling.result import Profile
from ropescope.profiling.run import first_tokens, profile
from ropescope.prompts import check_texts

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
    by_position: PositionHeadArrays | None = None  # scan_heads(by_position=True)

    def agreement(self) -> dict:
        return agreement(self.table)

    def class_counts(self) -> dict[str, int]:
        """Heads per class, in :data:`CLASS_ORDER`."""
        counts = self.table["class"].astype(str).value_counts()
        return {cls: int(counts.get(cls, 0)) for cls in CLASS_ORDER}

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {cls}" for cls, n in self.class_counts().items() if n)
        return (
            f"HeadReport({self.profile.meta.get('model_id')!r}, {len(self.table)} heads: {counts}; "
            f"threshold {self.threshold:g}, offsets 0..{self.max_offset})"
        )

    def _repr_html_(self) -> str:
        """The one line, then the positional heads and the ten strongest others as a table."""
        columns = ["layer", "head", "class", "score", "target", "offset_0", "offset_1", "sink", "hf_score"]
        table = self.table
        shown = pd.concat([table[table["class"].isin(POSITIONAL)], table[~table["class"].isin(POSITIONAL)].head(10)])
        return (
            f"<p><b>{html.escape(repr(self))}</b></p>"
            f"<p>Positional heads and the first ten others (layers and heads 0-based; "
            f"<code>.table</code> has every head and column, <code>ropescope report</code> draws them).</p>"
            + shown[columns].to_html(index=False, float_format=lambda v: f"{v:.3f}")
        )


def n_fast_chunks(n_chunks: int, hf_fraction: float) -> int:
    """How many of the fastest chunks count as "high frequency" (at least one)."""
    return max(1, int(round(hf_fraction * n_chunks)))


def scan_heads(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_tokens: int | None = None,
    max_offset: int = MAX_OFFSET,
    threshold: float = THRESHOLD,
    hf_fraction: float = HF_FRACTION,
    model_id: str | None = None,
    prompt_set: str = "custom",
    progress: Callable[[int], None] | bool | None = None,
    by_position: bool = False,
    reducers: Sequence[Callable] = (),
    tensors: tuple[str, ...] = ("q", "k"),
) -> HeadReport:
    """Score, explain and classify every head of ``model`` over ``texts`` in one pass.

    ``by_position`` also splits the offset scores by query position and measures every chunk's
    logit term against relative distance (:mod:`ropescope.heads.by_position`), in the same pass.
    ``reducers`` (:mod:`ropescope.hooks.reducers`) see the same forward passes, and ``tensors``
    chooses the chunk-norm statistics kept alongside (``("q", "k", "v")``: the report's ``profile``
    is then the whole profile of these prompts, taken one prompt per pass, in the same run).
    """
    texts = check_texts(texts)
    check_scan_options(max_offset=max_offset, threshold=threshold, hf_fraction=hf_fraction)
    anatomy = inspect_model(model)
    tok = tokenizer_of(model, tokenizer)
    first, _ = first_tokens(tok, texts[0], GATE_TOKENS)  # the gate reads 256 tokens: never the whole prompt
    if len(first):
        check_attention_rule(anatomy, torch.tensor([list(first)]))  # no head score is silently wrong
    # offsets beyond the longest prompt have no row: scored up to what the prompts can hold, not more
    limit = min(max_tokens or anatomy.context_length or 8192, anatomy.context_length or 8192)
    longest = max(len(first_tokens(tok, text, limit)[0]) for text in texts)
    if max_offset > max(1, longest - 2):
        cap = max(1, longest - 2)
        warnings.warn(
            f"offsets scored up to {cap} instead of {max_offset}: the longest prompt has {longest} tokens, "
            f"and offset d needs a row past it",
            stacklevel=2,
        )
        max_offset = cap
    reducer = HeadScoreReducer(anatomy.geometry, anatomy.logit_rules, anatomy.n_heads, max_offset)
    positional = None
    if by_position:
        context = anatomy.context_length or 8192
        longest = min(max_tokens or context, context)
        positional = PositionHeadReducer(
            anatomy.geometry,
            anatomy.logit_rules,
            anatomy.n_heads,
            max_offset,
            position_edges(anatomy.context_length),
            log_distances(longest),
        )
    # every reducer sees the same forward passes; those that need each row's normaliser share it
    prof = profile(
        anatomy,
        tokenizer_of(model, tokenizer),
        texts,
        reducers=[reducer, *([positional] if positional is not None else []), *reducers],
        tensors=tuple(dict.fromkeys(("q", "k", *tensors))),
        max_tokens=max_tokens,
        model_id=model_id,
        prompt_set=prompt_set,
        progress=progress,
    )
    if reducer.arrays.offset_rows.sum() == 0:
        raise PromptError("no prompt is longer than one token, so no attention offset exists")
    table = head_table(reducer.arrays, prof, threshold, hf_fraction)
    arrays = positional.arrays if positional is not None else None
    return HeadReport(table, reducer.arrays, prof, max_offset, threshold, hf_fraction, arrays)


def check_scan_options(
    *, max_offset: int = MAX_OFFSET, threshold: float = THRESHOLD, hf_fraction: float = HF_FRACTION
) -> None:
    """Refuse impossible options before any work (the command line calls this before loading)."""
    if not max_offset >= 1:
        raise PromptError(f"max_offset must be at least 1, got {max_offset}")
    if not 0 < threshold <= 1:
        raise PromptError(f"threshold must be in (0, 1], got {threshold}")
    if not 0 < hf_fraction <= 1:
        raise PromptError(f"hf_fraction must be in (0, 1], got {hf_fraction}")


def hf_scores(prof: Profile, hf_fraction: float) -> np.ndarray:
    """``[L, H]`` share of each head's q-k chunk-norm product in the fastest chunks.

    Product per chunk = mean ||q chunk|| of the query head times mean ||k chunk|| of its KV head
    (over the profiled tokens); the share is the fastest ``n_fast_chunks`` chunks' sum over all.
    """
    mq = prof.stats["q"].mean.numpy()
    mk = prof.stats["k"].mean.numpy()
    geometry, n_kv = prof.geometry, mk.shape[1]
    out = np.empty(mq.shape[:2])
    for layer in range(mq.shape[0]):
        chunks, lr = geometry.layer_chunks(layer), geometry.layers[layer]
        source = layer if lr.kv_source is None else lr.kv_source  # KV sharing: the keys it attends to
        keys = mk[source, : geometry.layers[source].kv_heads or n_kv, :chunks]
        product = mq[layer, :, :chunks] * np.repeat(keys, mq.shape[1] // keys.shape[0], axis=0)
        fast = n_fast_chunks(chunks, hf_fraction)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[layer] = product[:, :fast].sum(-1) / product.sum(-1)
    return out


def head_table(arrays: HeadArrays, prof: Profile, threshold: float, hf_fraction: float) -> pd.DataFrame:
    """One row per (layer, head), sorted by class then score.

    Columns: ``layer``, ``head``, ``kv_head`` (0-based); ``offset_0`` .. ``offset_K`` and ``sink``
    (mean attention); ``class``, ``score`` (the mean attention that decided the class, or the
    largest one for semantic/mixed), ``target`` (the preferred offset as text, ``offset d``, or
    ``sink``) and ``target_offset`` (that offset d as an integer, ``<NA>`` for the sink);
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
    geometry, n_kv = prof.geometry, prof.stats["k"].mean.shape[1]
    rows = []
    for layer in range(n_layers):
        if not geometry.layers[layer].attention:
            continue  # a hybrid model's linear-attention / Mamba layer has no attention to score
        fast = n_fast_chunks(geometry.layer_chunks(layer), hf_fraction)
        group = n_heads // (geometry.layers[layer].kv_heads or n_kv)
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
                target_offset=None if target == n_off else target,
                positional_score=float(off.max()),
                hf_score=float(hf[layer, head]),
                attr_hf_share=float(positive[:fast].sum() / positive.sum()) if positive.sum() > 0 else 0.0,
                attr_top_chunks=" ".join(
                    str(c) for c in np.argsort(-np.nan_to_num(advantage, nan=-np.inf), kind="stable")[:3]
                ),
                target_logit=float(target_logit[layer, head, target]),
                other_logit=float(np.nansum(other_attr[layer, head, target]) + pass_other[layer, head, target]),
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    table["class"] = pd.Categorical(table["class"], CLASS_ORDER, ordered=True)
    table["target_offset"] = table["target_offset"].astype("Int64")  # <NA> where the target is the sink
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


def long_head_table(table: pd.DataFrame) -> pd.DataFrame:
    """The head table in long (tidy) form: one row per (layer, head, measure), no lists in strings.

    Columns: ``layer``, ``head``, ``kv_head`` (0-based), ``class``, ``target`` (``offset d`` or
    ``sink``), ``measure`` and ``value`` (a float). Measures: every numeric column of
    :func:`head_table` (``offset_0`` .., ``sink``, ``score``, ``positional_score``, ``hf_score``,
    ``attr_hf_share``, ``target_logit``, ``other_logit``), ``target_offset`` (d, NaN for the sink)
    and ``attr_top_chunk_1`` .. ``_3`` (the chunks with the largest logit advantage, best first).
    """
    ids = ["layer", "head", "kv_head", "class", "target"]
    wide = table.copy()
    wide["class"] = wide["class"].astype(str)
    wide["target_offset"] = wide["target_offset"].to_numpy(dtype=float, na_value=np.nan)
    top = wide.pop("attr_top_chunks").astype(str).str.split()
    for i in range(3):
        wide[f"attr_top_chunk_{i + 1}"] = [float(c[i]) if len(c) > i else np.nan for c in top]
    measures = [c for c in wide.columns if c not in ids]
    long = wide.melt(id_vars=ids, value_vars=measures, var_name="measure", value_name="value")
    long["value"] = long["value"].astype(float)
    order = {m: i for i, m in enumerate(measures)}
    long = long.sort_values(["layer", "head", "measure"], key=lambda s: s.map(order) if s.name == "measure" else s)
    return long.reset_index(drop=True)


def position_score_table(report: HeadReport) -> pd.DataFrame:
    """Offset scores by query position, long form: ``layer``, ``head``, ``class``, ``offset``,
    ``position_from``, ``position_to`` (query positions, inclusive), ``score`` (mean attention on
    the key ``offset`` back), ``rows`` (query rows counted)."""
    arrays = _require_by_position(report)
    scores, rows = arrays.offset_scores(), arrays.offset_rows
    classes = _classes(report.table)
    out = []
    for (layer, head), cls in sorted(classes.items()):
        for d in range(scores.shape[2]):
            for b in range(scores.shape[3]):
                if rows[layer, d, b] > 0:
                    out.append(
                        {
                            "layer": layer,
                            "head": head,
                            "class": cls,
                            "offset": d,
                            "position_from": arrays.edges[b],
                            "position_to": arrays.edges[b + 1] - 1,
                            "score": float(scores[layer, head, d, b]),
                            "rows": int(rows[layer, d, b]),
                        }
                    )
    return pd.DataFrame(out)


def distance_term_table(report: HeadReport) -> pd.DataFrame:
    """Chunk terms against relative distance, summed per frequency quarter, long form: ``layer``,
    ``head``, ``class``, ``distance`` (tokens), ``quarter`` (1 = fastest chunks .. 4 = slowest),
    ``term`` (mean over query rows of the quarter's summed chunk terms of the logit on the key that
    far back; logit units), ``rows``."""
    arrays = _require_by_position(report)
    terms = arrays.distance_terms()
    geometry = report.profile.geometry
    classes = _classes(report.table)
    out = []
    for (layer, head), cls in sorted(classes.items()):
        for i, distance in enumerate(arrays.distances):
            if arrays.term_rows[layer, i] == 0:
                continue
            for q, chunks in enumerate(quarters(geometry.layer_chunks(layer))):
                out.append(
                    {
                        "layer": layer,
                        "head": head,
                        "class": cls,
                        "distance": distance,
                        "quarter": q + 1,
                        "term": float(terms[layer, head, i, chunks].sum()),
                        "rows": int(arrays.term_rows[layer, i]),
                    }
                )
    return pd.DataFrame(out)


def sink_heads(report: HeadReport, count: int = 6) -> list[tuple[int, int]]:
    """Up to ``count`` heads to show sinks by frequency for: the bos-sink heads by sink score, then,
    where there are fewer, the other heads with the largest sink score."""
    table = report.table
    is_sink = table["class"].astype(str) == "bos-sink"
    ordered = pd.concat(
        [
            table[is_sink].sort_values("sink", ascending=False, kind="stable"),
            table[~is_sink].sort_values("sink", ascending=False, kind="stable"),
        ]
    ).head(count)
    return [(int(la), int(he)) for la, he in zip(ordered["layer"], ordered["head"], strict=True)]


def sink_position_table(report: HeadReport, heads: Sequence[tuple[int, int]] | None = None) -> pd.DataFrame:
    """Sinks by frequency and position, long form, for ``heads`` (default: every bos-sink head):
    ``layer``, ``head``, ``class``, ``position_from``, ``position_to`` (query positions, inclusive),
    ``sink`` (mean attention on the first token over those rows), ``chunk`` (0 = fastest),
    ``frequency`` (rad/token), ``term`` (the chunk's mean term of the logit on the first token, logit
    units: ``scaling * (q_c . k_c)`` on post-RoPE q and k), ``rows`` (query rows that see the first
    token)."""
    arrays = _require_by_position(report)
    scores, terms = arrays.sink_scores(), arrays.sink_terms()
    classes = _classes(report.table)
    if heads is None:
        heads = [key for key, cls in sorted(classes.items()) if cls == "bos-sink"]
    geometry = report.profile.geometry
    out = []
    for layer, head in heads:
        freqs = geometry.frequencies(layer)
        for b in range(scores.shape[2]):
            if arrays.sink_rows[layer, b] == 0:
                continue
            for chunk in range(geometry.layer_chunks(layer)):
                out.append(
                    {
                        "layer": layer,
                        "head": head,
                        "class": classes[(layer, head)],
                        "position_from": arrays.edges[b],
                        "position_to": arrays.edges[b + 1] - 1,
                        "sink": float(scores[layer, head, b]),
                        "chunk": chunk,
                        "frequency": float(freqs[chunk]),
                        "term": float(terms[layer, head, b, chunk]),
                        "rows": int(arrays.sink_rows[layer, b]),
                    }
                )
    columns = ["layer", "head", "class", "position_from", "position_to", "sink", "chunk", "frequency", "term", "rows"]
    return pd.DataFrame(out, columns=columns)


def _classes(table: pd.DataFrame) -> dict[tuple[int, int], str]:
    return {(int(la), int(he)): str(c) for la, he, c in zip(table["layer"], table["head"], table["class"], strict=True)}


def _require_by_position(report: HeadReport) -> PositionHeadArrays:
    if report.by_position is None:
        raise ValueError("this head scan has no position statistics: scan with by_position=True")
    return report.by_position

"""Heads against position and distance (``ropescope heads --by-position``), in the scan's own pass.

- **Offset scores by query position.** ``offset_d`` of every head (mean attention on the key ``d``
  tokens back, as in :mod:`~ropescope.heads.scores`), split by the query's position into the
  profile's log-spaced buckets (0-15, 16-63, ...; :mod:`ropescope.hooks.position`). Summed over
  buckets they give the whole-scan score: the same rows (to float32 rounding of the whole scan's
  per-block sums; these are summed in float64).
- **Chunk terms by relative distance.** For log-spaced distances r (0, 1, 2, 4, ..., up to the
  longest prompt), the mean over query rows i of every chunk's term of the logit on the key at
  ``i - r``: ``scaling * (q_i,c . k_(i-r),c)`` on post-RoPE q and k (a logit is the sum of these
  terms over chunks, plus the unrotated dims). Where a head's query and key agree in a chunk of
  frequency g, this term falls like cos(g r): slow chunks keep their contribution up to r of
  about 1/g, fast ones lose it within a few tokens (T6.1, F8/F9). Each distance costs one pass over
  the rows (the keys are a contiguous slice), so thousands of tokens stay cheap.
- **Sinks by frequency and position.** The ``sink`` score (mean attention on the first token, as in
  :mod:`~ropescope.heads.scores`) per query-position bucket, and every chunk's term of the logit on
  the first token per bucket: which frequencies build a BOS sink, and whether they keep building it
  as the query moves away from it (the relative distance to the sink is the query's position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ropescope.heads.scores import GroupedPairs, target_terms
from ropescope.hooks.attention import check_dense, row_logsumexp, visible
from ropescope.hooks.precision import in_full_float32
from ropescope.model.anatomy import LogitRule
from ropescope.model.geometry import RopeGeometry


def log_distances(longest: int) -> tuple[int, ...]:
    """0, 1, 2, 4, 8, ... below ``longest`` tokens."""
    out, d = [0], 1
    while d < longest:
        out.append(d)
        d *= 2
    return tuple(out)


def _per_row(sums: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``sums / rows`` (``rows`` broadcast against ``sums``), NaN where no row was counted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, sums / np.maximum(rows, 1), np.nan)


@dataclass
class PositionHeadArrays:
    """Sums and row counts behind :meth:`offset_scores` and :meth:`distance_terms`."""

    edges: tuple[int, ...]
    distances: tuple[int, ...]
    offset_sum: np.ndarray  # [L, H, K+1, B]
    offset_rows: np.ndarray  # [L, K+1, B]
    term_sum: np.ndarray  # [L, H, R, C]: chunk terms on the key r back
    term_rows: np.ndarray  # [L, R]
    sink_sum: np.ndarray  # [L, H, B]: attention on the first token
    sink_term_sum: np.ndarray  # [L, H, B, C]: chunk terms of the logit on the first token
    sink_rows: np.ndarray  # [L, B]

    def offset_scores(self) -> np.ndarray:
        """``[L, H, K+1, B]`` mean attention on each offset per query-position bucket (NaN: no row)."""
        return _per_row(self.offset_sum, self.offset_rows[:, None])

    def sink_scores(self) -> np.ndarray:
        """``[L, H, B]`` mean attention on the first token per query-position bucket (NaN: no row)."""
        return _per_row(self.sink_sum, self.sink_rows[:, None])

    def sink_terms(self) -> np.ndarray:
        """``[L, H, B, C]`` mean chunk term (logit units) of the logit on the first token per
        query-position bucket, over the rows that see it (NaN: no row, or a chunk the layer lacks)."""
        return _per_row(self.sink_term_sum, self.sink_rows[:, None, :, None])

    def distance_terms(self) -> np.ndarray:
        """``[L, H, R, C]`` mean chunk term of the logit on the key ``distances[r]`` back."""
        return _per_row(self.term_sum, self.term_rows[:, None, :, None])


class PositionHeadReducer:
    """``on_qk`` consumer filling :class:`PositionHeadArrays` (one prompt per forward pass).

    The sums stay on the device of q and k through the scan; :attr:`arrays` copies them once, when read."""

    uses_lse = True  # each row's softmax normaliser (shared with the run's other reducers; whole prompts)

    def __init__(
        self,
        geometry: RopeGeometry,
        rules: Sequence[LogitRule],
        n_heads: int,
        max_offset: int,
        edges: Sequence[int],
        distances: Sequence[int],
        block: int = 256,
    ):
        self.geometry, self.rules, self.max_offset, self.block = geometry, rules, max_offset, block
        L, C, B, R = geometry.n_layers, geometry.n_chunks, len(edges) - 1, len(distances)
        self.edges, self.distances = tuple(int(e) for e in edges), tuple(int(d) for d in distances)
        term_sum = torch.zeros(L, n_heads, R, C, dtype=torch.float64)
        sink_term_sum = torch.zeros(L, n_heads, B, C, dtype=torch.float64)
        for layer in range(L):  # chunks a layer does not have (Gemma 4's smaller heads)
            term_sum[layer, ..., geometry.layer_chunks(layer) :] = torch.nan
            sink_term_sum[layer, ..., geometry.layer_chunks(layer) :] = torch.nan
        self._sums = {
            "offset_sum": torch.zeros(L, n_heads, max_offset + 1, B, dtype=torch.float64),
            "offset_rows": torch.zeros(L, max_offset + 1, B, dtype=torch.float64),
            "term_sum": term_sum,
            "term_rows": torch.zeros(L, R, dtype=torch.float64),
            "sink_sum": torch.zeros(L, n_heads, B, dtype=torch.float64),
            "sink_term_sum": sink_term_sum,
            "sink_rows": torch.zeros(L, B, dtype=torch.float64),
        }
        self._inner_edges = torch.tensor(self.edges[1:-1])
        self._arrays: PositionHeadArrays | None = None

    @property
    def arrays(self) -> PositionHeadArrays:
        """The sums so far as numpy arrays (one copy from the device, made when first read after a call)."""
        if self._arrays is None:
            numpy = {name: t.cpu().numpy().copy() for name, t in self._sums.items()}
            self._arrays = PositionHeadArrays(self.edges, self.distances, **numpy)
        return self._arrays

    @in_full_float32
    def __call__(self, layer: int, q_rot: torch.Tensor, k_rot: torch.Tensor, mask=None, lse=None) -> None:
        """Add one prompt's post-RoPE ``q_rot``, ``k_rot`` of ``layer`` (``lse``: each row's softmax
        log-normaliser ``[H, S]``, where the caller already computed it)."""
        if q_rot.shape[0] != 1:
            raise ValueError("head scores take one prompt per forward pass")
        q, k = q_rot[0].float(), k_rot[0].float()
        check_dense(self.rules[layer], q.shape[1], layer)
        if self._sums["offset_sum"].device != q.device:  # moved once, on the first call
            self._sums = {name: t.to(q.device) for name, t in self._sums.items()}
            self._inner_edges = self._inner_edges.to(q.device)
        self._arrays = None
        pairs = GroupedPairs.of(q, k, self.geometry.layer_rotary_dim(layer), self.geometry.layout)
        lse = row_logsumexp(q, k, self.rules[layer], self.block) if lse is None else lse
        self._offsets(layer, q, k, pairs, lse)
        self._sink(layer, pairs, lse)
        self._terms(layer, pairs, q.shape[1])

    def _offsets(self, layer: int, q: torch.Tensor, k: torch.Tensor, pairs: GroupedPairs, lse=None) -> None:
        """``offset_d`` of every head, each row's attention ``exp(logit - LSE)`` added to its query's bucket."""
        rule, K = self.rules[layer], self.max_offset
        heads, seq = q.shape[0], q.shape[1]
        lse = lse.double().reshape(*pairs.qa.shape[:2], seq)
        rows = torch.arange(seq, device=q.device)
        bucket = torch.bucketize(rows, self._inner_edges, right=True)  # [S]: the query's position bucket
        sums, counts = self._sums["offset_sum"][layer], self._sums["offset_rows"][layer]
        for d in range(min(K + 1, seq)):
            here = rows[d + 1 :]
            seen = visible(here, here - d, rule).double()  # the rows of the whole-scan offset_d
            _, _, logit = target_terms(pairs, rule, slice(d + 1, None), slice(1, max(d + 1, seq) - d))
            probs = torch.exp((logit - lse[..., d + 1 :]).masked_fill(seen == 0, -torch.inf))
            sums[:, d].index_add_(1, bucket[d + 1 :], (probs * seen).reshape(heads, -1))
            counts[d].index_add_(0, bucket[d + 1 :], seen)

    def _sink(self, layer: int, pairs: GroupedPairs, lse: torch.Tensor) -> None:
        """Attention on the first token and its chunk terms, rows ``i >= 1`` that see it, by bucket."""
        rule, r = self.rules[layer], self.geometry.layer_rotary_dim(layer)
        seq = pairs.qa.shape[2]
        if seq < 2:
            return
        heads = pairs.qa.shape[0] * pairs.qa.shape[1]
        rows = torch.arange(1, seq, device=pairs.qa.device)
        seen = visible(rows, torch.zeros_like(rows), rule)  # [S - 1]
        bucket = torch.bucketize(rows, self._inner_edges, right=True)
        term, _, logit = target_terms(pairs, rule, slice(1, None), slice(0, 1))  # one key for all rows
        lse = lse.double().reshape(*pairs.qa.shape[:2], seq)[..., 1:]
        probs = torch.exp((logit - lse).masked_fill(~seen.bool(), -torch.inf))
        self._sums["sink_sum"][layer].index_add_(1, bucket, (probs * seen.double()).reshape(heads, -1))
        self._sums["sink_rows"][layer].index_add_(0, bucket, seen.double())
        weighted = (term.double() * seen.double()[:, None]).reshape(heads, -1, term.shape[-1])  # [H, S-1, C]
        self._sums["sink_term_sum"][layer][:, :, : r // 2].index_add_(1, bucket, weighted)

    def _terms(self, layer: int, pairs: GroupedPairs, seq: int) -> None:
        rule, r = self.rules[layer], self.geometry.layer_rotary_dim(layer)
        heads = pairs.qa.shape[0] * pairs.qa.shape[1]
        rows = torch.arange(seq, device=pairs.qa.device)
        term_sum, term_rows = self._sums["term_sum"][layer], self._sums["term_rows"][layer]
        for index, d in enumerate(self.distances):
            if d >= seq:
                continue
            here = rows[d:]
            weight = visible(here, here - d, rule).float()  # [S - d]
            term, _, _ = target_terms(pairs, rule, slice(d, None), slice(0, seq - d))  # [Hkv, G, S-d, C]
            # in place on views (``x[i] += y`` would also copy the result back)
            term_sum[:, index, : r // 2].add_((term * weight[:, None]).sum(-2, dtype=torch.float64).reshape(heads, -1))
            term_rows[index].add_(weight.sum(dtype=torch.float64))

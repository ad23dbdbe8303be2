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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ropescope.heads.attention import attention_blocks, visible
from ropescope.heads.scores import offset_values
from ropescope.hooks.precision import in_full_float32
from ropescope.model.anatomy import LogitRule
from ropescope.model.geometry import RopeGeometry, split_pairs


def log_distances(longest: int) -> tuple[int, ...]:
    """0, 1, 2, 4, 8, ... below ``longest`` tokens."""
    out, d = [0], 1
    while d < longest:
        out.append(d)
        d *= 2
    return tuple(out)


@dataclass
class PositionHeadArrays:
    """Sums and row counts behind :meth:`offset_scores` and :meth:`distance_terms`."""

    edges: tuple[int, ...]
    distances: tuple[int, ...]
    offset_sum: np.ndarray  # [L, H, K+1, B]
    offset_rows: np.ndarray  # [L, K+1, B]
    term_sum: np.ndarray  # [L, H, R, C]: chunk terms on the key r back
    term_rows: np.ndarray  # [L, R]

    def offset_scores(self) -> np.ndarray:
        """``[L, H, K+1, B]`` mean attention on each offset per query-position bucket (NaN: no row)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = self.offset_rows[:, None]
            return np.where(rows > 0, self.offset_sum / np.maximum(rows, 1), np.nan)

    def distance_terms(self) -> np.ndarray:
        """``[L, H, R, C]`` mean chunk term of the logit on the key ``distances[r]`` back."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = self.term_rows[:, None, :, None]
            return np.where(rows > 0, self.term_sum / np.maximum(rows, 1), np.nan)


class PositionHeadReducer:
    """``on_qk`` consumer filling :class:`PositionHeadArrays` (one prompt per forward pass)."""

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
        self.arrays = PositionHeadArrays(
            tuple(int(e) for e in edges),
            tuple(int(d) for d in distances),
            np.zeros((L, n_heads, max_offset + 1, B)),
            np.zeros((L, max_offset + 1, B)),
            np.zeros((L, n_heads, R, C)),
            np.zeros((L, R)),
        )
        for layer in range(L):  # chunks a layer does not have (Gemma 4's smaller heads)
            self.arrays.term_sum[layer, ..., geometry.layer_chunks(layer) :] = np.nan
        self._edges = torch.tensor(self.arrays.edges[1:-1])

    @in_full_float32
    def __call__(self, layer: int, q_rot: torch.Tensor, k_rot: torch.Tensor, mask=None) -> None:
        if q_rot.shape[0] != 1:
            raise ValueError("head scores take one prompt per forward pass")
        q, k = q_rot[0].float(), k_rot[0].float()
        self._offsets(layer, q, k)
        self._terms(layer, q, k)

    def _offsets(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        rule, K = self.rules[layer], self.max_offset
        heads, n_buckets = q.shape[0], self.arrays.offset_sum.shape[-1]
        f64 = dict(dtype=torch.float64, device=q.device)
        sums, rows = torch.zeros(heads, K + 1, n_buckets, **f64), torch.zeros(K + 1, n_buckets, **f64)
        edges = self._edges.to(q.device)
        for blk in attention_blocks(q, k, rule, self.block):
            bucket = torch.bucketize(blk.rows, edges, right=True)  # [R]: the query's position bucket
            for d in range(K + 1):
                vals, ok = offset_values(blk, d, rule)  # the rows and values of the whole-scan offset_d
                sums[:, d].index_add_(1, bucket, vals.double() * ok)
                rows[d].index_add_(0, bucket, ok.double())
        self.arrays.offset_sum[layer] += sums.cpu().numpy()
        self.arrays.offset_rows[layer] += rows.cpu().numpy()

    def _terms(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        rule, r = self.rules[layer], self.geometry.layer_rotary_dim(layer)
        group = q.shape[0] // k.shape[0]
        qa, qb = split_pairs(q[..., :r], self.geometry.layout)
        ka, kb = split_pairs(k.repeat_interleave(group, dim=0)[..., :r], self.geometry.layout)
        seq = q.shape[1]
        rows = torch.arange(seq, device=q.device)
        a = self.arrays
        for index, d in enumerate(a.distances):
            if d >= seq:
                continue
            here = rows[d:]
            weight = visible(here, here - d, rule).float()  # [S - d]
            term = rule.scaling * (qa[:, d:] * ka[:, : seq - d] + qb[:, d:] * kb[:, : seq - d])  # [H, S-d, C]
            a.term_sum[layer, :, index, : r // 2] += (
                (term * weight[None, :, None]).sum(1, dtype=torch.float64).cpu().numpy()
            )
            a.term_rows[layer, index] += float(weight.sum(dtype=torch.float64))

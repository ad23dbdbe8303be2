"""Attention-offset scores, per-chunk logit attribution and classification of every head.

For every layer and query head, over all prompts (PAPER_SPEC section 2):

- ``offset_d`` (d = 0..K): mean attention probability on the key ``d`` tokens back, over query rows
  ``i >= d + 1`` that can see that key (so the key is never the first token). ``offset_0`` is
  the diagonal, ``offset_1`` the previous token.
- ``sink``: mean attention on the first token (BOS where the tokenizer adds one), over rows
  ``i >= 1`` that can see it.
- Attribution: each logit before soft-capping is a sum over chunks of the scaled 2-D dot product of
  that chunk of the rotated q and k (plus the unrotated dims of partial-rotary models). For each
  target (each offset and the sink) the mean of every chunk's term on that target, and its mean
  over all *other* visible keys of the same rows.

All of it is reduced per layer from post-RoPE q and k as they pass (block-wise attention, see
:mod:`ropescope.heads.attention`), one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ropescope.heads.attention import attention_blocks, first_visible, last_visible, visible
from ropescope.hooks.precision import in_full_float32
from ropescope.model.anatomy import LogitRule
from ropescope.model.geometry import RopeGeometry, split_pairs


@dataclass
class HeadArrays:
    """Sums over rows of every quantity, and the row counts, for all layers and heads."""

    offset_sum: np.ndarray  # [L, H, K+1]
    offset_rows: np.ndarray  # [L, K+1]
    sink_sum: np.ndarray  # [L, H]
    sink_rows: np.ndarray  # [L]
    target_chunk_sum: np.ndarray  # [L, H, K+2, C]: chunk terms on each target (offsets, then sink)
    other_chunk_sum: np.ndarray  # [L, H, K+2, C]: chunk terms averaged over the other visible keys
    target_pass_sum: np.ndarray  # [L, H, K+2]: unrotated-dims term on each target
    other_pass_sum: np.ndarray  # [L, H, K+2]
    target_logit_sum: np.ndarray  # [L, H, K+2]: logit (after soft-capping) on each target
    target_rows: np.ndarray  # [L, K+2]

    @classmethod
    def zeros(cls, n_layers: int, n_heads: int, max_offset: int, n_chunks: int) -> HeadArrays:
        t = max_offset + 2
        return cls(
            np.zeros((n_layers, n_heads, max_offset + 1)),
            np.zeros((n_layers, max_offset + 1)),
            np.zeros((n_layers, n_heads)),
            np.zeros(n_layers),
            np.zeros((n_layers, n_heads, t, n_chunks)),
            np.zeros((n_layers, n_heads, t, n_chunks)),
            np.zeros((n_layers, n_heads, t)),
            np.zeros((n_layers, n_heads, t)),
            np.zeros((n_layers, n_heads, t)),
            np.zeros((n_layers, t)),
        )

    @staticmethod
    def _mean(total: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, total / np.maximum(rows, 1), np.nan)

    def offset_scores(self) -> np.ndarray:
        """``[L, H, K+1]`` mean attention on each offset (NaN where no row had it)."""
        return self._mean(self.offset_sum, self.offset_rows[:, None, :])

    def sink_scores(self) -> np.ndarray:
        """``[L, H]`` mean attention on the first token."""
        return self._mean(self.sink_sum, self.sink_rows[:, None])

    def target_attribution(self) -> tuple[np.ndarray, np.ndarray]:
        """``[L, H, K+2, C]`` mean chunk terms on each target and over the other keys."""
        rows = self.target_rows[:, None, :, None]
        return self._mean(self.target_chunk_sum, rows), self._mean(self.other_chunk_sum, rows)

    def target_logits(self) -> np.ndarray:
        """``[L, H, K+2]`` mean logit on each target."""
        return self._mean(self.target_logit_sum, self.target_rows[:, None, :])


def offset_values(blk, d: int, rule: LogitRule) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs [H, R], counted [R])`` of one attention block: each row's attention on the key ``d``
    tokens back, and whether the row counts for ``offset_d`` (``i >= d + 1`` and the key visible)."""
    ok = (blk.rows >= d + 1) & visible(blk.rows, blk.rows - d, rule)
    column = (blk.rows - d - blk.j0).clamp(0, blk.probs.shape[-1] - 1)
    heads = blk.probs.shape[0]
    return blk.probs.gather(2, column[None, :, None].expand(heads, -1, 1))[..., 0], ok


class HeadScoreReducer:
    """``on_qk`` consumer for :func:`ropescope.hooks.capture` filling :class:`HeadArrays`
    (``layers``: only these layers; :meth:`add` scores a query the caller altered, as the causal test does)."""

    def __init__(
        self,
        geometry: RopeGeometry,
        rules: Sequence[LogitRule],
        n_heads: int,
        max_offset: int = 8,
        block: int = 256,
        layers: set[int] | None = None,
    ):
        self.geometry, self.rules, self.max_offset, self.block = geometry, rules, max_offset, block
        self.layers = layers
        self.arrays = HeadArrays.zeros(geometry.n_layers, n_heads, max_offset, geometry.n_chunks)
        for layer in range(geometry.n_layers):  # chunks a layer does not have (Gemma 4's smaller heads)
            own = geometry.layer_chunks(layer)
            self.arrays.target_chunk_sum[layer, :, :, own:] = np.nan
            self.arrays.other_chunk_sum[layer, :, :, own:] = np.nan

    def __call__(self, layer: int, q_rot: torch.Tensor, k_rot: torch.Tensor, mask=None) -> None:
        if self.layers is not None and layer not in self.layers:
            return
        if q_rot.shape[0] != 1:
            raise ValueError("head scores take one prompt per forward pass")
        self.add(layer, q_rot[0].float(), k_rot[0].float())

    @in_full_float32
    def add(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        """Accumulate one prompt's ``q[H, S, D]``, ``k[Hkv, S, D]`` (post-RoPE) of ``layer``.

        Everything is summed on the tensors' device with 0/1 row weights (no per-block selection of
        rows, so no host synchronisation inside the loops) and copied to the host once per call."""
        rule, K = self.rules[layer], self.max_offset
        heads, seq = q.shape[0], q.shape[1]
        f64 = dict(dtype=torch.float64, device=q.device)
        offset_sum, offset_rows = torch.zeros(heads, K + 1, **f64), torch.zeros(K + 1, **f64)
        sink_sum, sink_rows = torch.zeros(heads, **f64), torch.zeros((), **f64)
        for blk in attention_blocks(q, k, rule, self.block):
            for d in range(K + 1):
                vals, ok = offset_values(blk, d, rule)
                offset_sum[:, d] += (vals * ok).sum(dim=1).double()
                offset_rows[d] += ok.sum()
            ok = (blk.rows >= 1) & visible(blk.rows, torch.zeros_like(blk.rows), rule)
            sink = blk.probs[:, :, 0] if blk.j0 == 0 else torch.zeros_like(blk.probs[:, :, 0])
            sink_sum += (sink * ok).sum(dim=1).double()
            sink_rows += ok.sum()
        a = self.arrays
        a.offset_sum[layer] += offset_sum.cpu().numpy()
        a.offset_rows[layer] += offset_rows.cpu().numpy()
        a.sink_sum[layer] += sink_sum.cpu().numpy()
        a.sink_rows[layer] += float(sink_rows)
        self._attribute(layer, q, k, rule, seq)

    def _attribute(self, layer, q, k, rule: LogitRule, seq: int) -> None:
        """Per-chunk logit attribution of every target offset (and the first token), summed over rows.

        Element-wise products run in float32 (the precision of q and k themselves); every sum over
        rows, and the prefix sums over keys that give each row's visible-key total, are float64."""
        K, r = self.max_offset, self.geometry.layer_rotary_dim(layer)
        layout = self.geometry.layout
        group = q.shape[0] // k.shape[0]
        q32, k32 = q.float(), k.float().repeat_interleave(group, dim=0)  # [H, S, D]
        qa, qb = split_pairs(q32[..., :r], layout)
        ka, kb = split_pairs(k32[..., :r], layout)
        q_pass, k_pass = q32[..., r:], k32[..., r:]
        # prefix sums over keys (float64: window sums subtract two of them) give each row's visible-key sum
        zero = torch.zeros_like(k32[:, :1], dtype=torch.float64)
        prefix = torch.cat([zero, torch.cumsum(k32, dim=1, dtype=torch.float64)], dim=1)  # [H, S+1, D]
        rows = torch.arange(seq, device=q.device)
        first = first_visible(rows, rule)
        last = last_visible(rows, seq, rule)
        key_sum = (prefix[:, last + 1] - prefix[:, first]).float()  # [H, S, D]
        sa, sb = split_pairs(key_sum[..., :r], layout)
        all_chunk = rule.scaling * (qa * sa + qb * sb)  # [H, S, C]
        all_pass = rule.scaling * (q_pass * key_sum[..., r:]).sum(-1)  # [H, S]
        n_visible = (last - first + 1).float()
        others = (n_visible - 1).clamp(min=1)  # [S]: visible keys other than the target
        sums = {
            name: [] for name in ("target_chunk", "other_chunk", "target_pass", "other_pass", "target_logit", "rows")
        }
        f64 = torch.float64
        # target d: the key d tokens back (rows d+1 ..), then the first token (rows 1 ..); the keys of
        # rows start .. S-1 are a contiguous slice (or the first key, broadcast), so no gathering
        for d in [*range(K + 1), None]:
            start = 1 if d is None else d + 1
            keys = slice(0, 1) if d is None else slice(start - d, max(start, seq) - d)  # empty past the end
            here = rows[start:]
            key = torch.zeros_like(here) if d is None else here - d
            weight = (visible(here, key, rule) & (n_visible[start:] >= 2)).float()  # [S - start]
            chunk = rule.scaling * (qa[:, start:] * ka[:, keys] + qb[:, start:] * kb[:, keys])  # [H, S - start, C]
            passed = rule.scaling * (q_pass[:, start:] * k_pass[:, keys]).sum(-1)  # [H, S - start]
            logit = chunk.sum(-1, dtype=f64) + passed.double()
            if rule.softcap:
                logit = torch.tanh(logit / rule.softcap) * rule.softcap
            spread = weight / others[start:]  # each other visible key's share of the row's weight
            sums["target_chunk"].append((chunk * weight[None, :, None]).sum(1, dtype=f64))
            other = (all_chunk[:, start:] - chunk) * spread[None, :, None]
            sums["other_chunk"].append(other.sum(1, dtype=f64))
            sums["target_pass"].append((passed * weight).sum(1, dtype=f64))
            sums["other_pass"].append(((all_pass[:, start:] - passed) * spread).sum(1, dtype=f64))
            sums["target_logit"].append((logit * weight.double()).sum(1))
            sums["rows"].append(weight.sum(dtype=f64))
        a = self.arrays
        own = slice(0, r // 2)  # the layer's own chunks
        a.target_chunk_sum[layer, ..., own] += torch.stack(sums["target_chunk"], dim=1).cpu().numpy()  # [H, K+2, C]
        a.other_chunk_sum[layer, ..., own] += torch.stack(sums["other_chunk"], dim=1).cpu().numpy()
        a.target_pass_sum[layer] += torch.stack(sums["target_pass"], dim=1).cpu().numpy()  # [H, K+2]
        a.other_pass_sum[layer] += torch.stack(sums["other_pass"], dim=1).cpu().numpy()
        a.target_logit_sum[layer] += torch.stack(sums["target_logit"], dim=1).cpu().numpy()
        a.target_rows[layer] += torch.stack(sums["rows"]).cpu().numpy()

"""Attention-offset scores, per-chunk logit attribution and classification of every head.

For every layer and query head, over all prompts (the paper's Section 5):

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
:mod:`ropescope.hooks.attention`), one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ropescope.heads.defaults import MAX_OFFSET
from ropescope.hooks.attention import check_dense, first_visible, last_visible, row_logsumexp, visible
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


class GroupedPairs(NamedTuple):
    """Post-RoPE q and k of one prompt split for per-chunk terms: the two dims of every chunk
    (``qa``, ``qb``: ``[Hkv, group, S, C]``; ``ka``, ``kb``: ``[Hkv, 1, S, C]``, each query head
    beside the KV head it reads) and the unrotated dims (``q_pass``, ``k_pass``)."""

    qa: torch.Tensor
    qb: torch.Tensor
    q_pass: torch.Tensor
    ka: torch.Tensor
    kb: torch.Tensor
    k_pass: torch.Tensor

    @classmethod
    def of(cls, q: torch.Tensor, k: torch.Tensor, rotary_dim: int, layout: str) -> GroupedPairs:
        """From ``q[H, S, D]`` and ``k[Hkv, S, D]`` (float32)."""
        qg = q.reshape(k.shape[0], q.shape[0] // k.shape[0], q.shape[1], -1)
        kg = k[:, None]
        qa, qb = split_pairs(qg[..., :rotary_dim], layout)
        ka, kb = split_pairs(kg[..., :rotary_dim], layout)
        return cls(qa, qb, qg[..., rotary_dim:], ka, kb, kg[..., rotary_dim:])


def pair_terms(qa, ka, qb, kb, scaling: float) -> torch.Tensor:
    """``scaling * (qa * ka + qb * kb)``, broadcast, in three operators (one product, one fused
    multiply-add and the scaling in place) instead of four."""
    return torch.mul(qa, ka).addcmul_(qb, kb).mul_(scaling)


def target_terms(
    p: GroupedPairs, rule: LogitRule, rows: slice, keys: slice
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Of query rows ``rows`` against keys ``keys`` (same length, or one key for all rows), pairwise:
    every chunk's term of the logit ``scaling * (q_c . k_c)`` (``[Hkv, G, R, C]``, float32), the
    unrotated dims' term (``[Hkv, G, R]``; None where every dim rotates) and the logit itself
    (float64, soft-capped as the model does)."""
    chunk = pair_terms(p.qa[..., rows, :], p.ka[..., keys, :], p.qb[..., rows, :], p.kb[..., keys, :], rule.scaling)
    logit = chunk.sum(-1, dtype=torch.float64)
    passed = None
    if p.q_pass.shape[-1]:  # partial rotary, MLA's no-RoPE part
        passed = rule.scaling * (p.q_pass[..., rows, :] * p.k_pass[..., keys, :]).sum(-1)
        logit = logit + passed.double()
    if rule.softcap:
        logit = torch.tanh(logit / rule.softcap) * rule.softcap
    return chunk, passed, logit


class RowPlan(NamedTuple):
    """What the scores of every layer of one prompt length and attention rule share (positions
    only, no data): ``bounds[2S]``, each row's last visible key + 1, then its first (the prefix-sum
    indices whose difference is the row's visible-key sum), and for the T = K + 2 targets (the key
    ``d`` tokens back for d = 0..K, then the first token) ``key[T, S]``, the target key of each row;
    ``hidden[T, S]``, True where row i does not count for that target (before the target's first
    row, or the key is out of its sight); ``weight[T, S]``, 1.0 where the row counts and also has
    another visible key (rows of the attribution; ``weight64`` in float64); ``spread`` = weight
    shared among the row's other visible keys; and the row counts ``seen_rows`` and
    ``weight_rows`` (``[T]``, float64)."""

    bounds: torch.Tensor
    key: torch.Tensor
    hidden: torch.Tensor
    weight: torch.Tensor
    weight64: torch.Tensor
    spread: torch.Tensor
    seen_rows: torch.Tensor
    weight_rows: torch.Tensor

    @classmethod
    def of(cls, seq: int, rule: LogitRule, max_offset: int, device) -> RowPlan:
        rows = torch.arange(seq, device=device)
        first = first_visible(rows, rule)
        last = last_visible(rows, seq, rule)
        n_visible = (last - first + 1).float()
        others = (n_visible - 1).clamp(min=1)  # [S]: visible keys other than the target
        back = torch.cat([torch.arange(max_offset + 1, device=device), torch.zeros(1, dtype=torch.long, device=device)])
        key = rows[None, :] - back[:, None]  # [T, S]
        key[-1] = 0
        start = (back + 1).clamp(min=1)  # first row of each target: offset d from row d + 1, the first token from 1
        seen = (rows[None, :] >= start[:, None]) & visible(rows[None, :], key, rule)  # [T, S]
        weight = (seen & (n_visible >= 2)[None, :]).float()
        f64 = torch.float64
        return cls(
            torch.cat([last + 1, first]),
            key.clamp(min=0),
            ~seen,
            weight,
            weight.double(),
            weight / others[None, :],
            seen.sum(-1, dtype=f64),
            weight.sum(-1, dtype=f64),
        )


# the most float32 values one block of the attribution's [KV heads, group, targets, rows, chunks]
# products holds: on a CPU 4 MB (blocks that stay in cache ran the sliding layers of Gemma 3 270M at
# 8,192 tokens 1.4x faster than one 32 MB block), on a GPU 64 MB (fewer, larger kernels)
_BLOCK_ELEMENTS = {"cpu": 1 << 20}
_BLOCK_ELEMENTS_ELSEWHERE = 1 << 24

# the running sums of the attribution, as HeadArrays names them
_TERMS = ("target_chunk_sum", "other_chunk_sum", "target_pass_sum", "other_pass_sum", "target_logit_sum")
_ALL = slice(None)


class HeadScoreReducer:
    """A reducer (:mod:`ropescope.hooks.reducers`) filling :class:`HeadArrays`
    (``layers``: only these layers; :meth:`add` scores a query the caller altered, as the causal test does).

    The sums stay on the device of q and k through the whole scan (no copy to the host per layer or
    prompt); :attr:`arrays` copies them once, when read."""

    uses_lse = True  # each row's softmax normaliser (shared with the run's other reducers; whole prompts)

    def __init__(
        self,
        geometry: RopeGeometry,
        rules: Sequence[LogitRule],
        n_heads: int,
        max_offset: int = MAX_OFFSET,
        block: int = 256,
        layers: set[int] | None = None,
    ):
        self.geometry, self.rules, self.max_offset, self.block = geometry, rules, max_offset, block
        self.layers = layers
        zeros = HeadArrays.zeros(geometry.n_layers, n_heads, max_offset, geometry.n_chunks)
        for layer in range(geometry.n_layers):  # chunks a layer does not have (Gemma 4's smaller heads)
            own = geometry.layer_chunks(layer)
            zeros.target_chunk_sum[layer, :, :, own:] = np.nan
            zeros.other_chunk_sum[layer, :, :, own:] = np.nan
        # running sums on the device: the attention on every target (offsets, then the first token) in
        # one tensor, the attribution's as HeadArrays has them; row counts are positions only, so each
        # layer keeps how often it saw each RowPlan and the counts are made when read
        probs = np.concatenate([zeros.offset_sum, zeros.sink_sum[..., None]], axis=-1)
        self._sums = {"probs": torch.from_numpy(probs)} | {
            name: torch.from_numpy(getattr(zeros, name)) for name in _TERMS
        }
        # layer -> plan key -> [times used, the plan's seen_rows, weight_rows] (not the plan: its [T, S]
        # tensors stay bounded by the plan cache; these are [T] each)
        self._row_plans: dict[int, dict[tuple, list]] = {}
        self._arrays: HeadArrays | None = zeros
        self._plans: dict[tuple, RowPlan] = {}

    @property
    def arrays(self) -> HeadArrays:
        """The sums so far as numpy arrays (one copy from the device, made when first read after an add)."""
        if self._arrays is None:
            host = {name: t.cpu().numpy().copy() for name, t in self._sums.items()}
            probs, k = host.pop("probs"), self.max_offset
            layers, targets = probs.shape[0], probs.shape[2]
            seen, rows = np.zeros((layers, targets)), np.zeros((layers, targets))
            for layer, plans in self._row_plans.items():
                for times, seen_rows, weight_rows in plans.values():
                    seen[layer] += times * seen_rows.cpu().numpy()
                    rows[layer] += times * weight_rows.cpu().numpy()
            self._arrays = HeadArrays(
                offset_sum=probs[..., : k + 1].copy(),
                offset_rows=seen[:, : k + 1].copy(),
                sink_sum=probs[..., k + 1].copy(),
                sink_rows=seen[:, k + 1].copy(),
                target_rows=rows,
                **host,
            )
        return self._arrays

    def __call__(self, layer: int, q_rot: torch.Tensor, k_rot: torch.Tensor, mask=None, lse=None) -> None:
        if self.layers is not None and layer not in self.layers:
            return
        if q_rot.shape[0] != 1:
            raise ValueError("head scores take one prompt per forward pass")
        self.add(layer, q_rot[0].float(), k_rot[0].float(), lse)

    @in_full_float32
    def add(self, layer: int, q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor | None = None) -> None:
        """Accumulate one prompt's ``q[H, S, D]``, ``k[Hkv, S, D]`` (post-RoPE) of ``layer``.

        Each row's softmax normaliser (:func:`~ropescope.hooks.attention.row_logsumexp`) is the only
        pass over all keys; the attention on each target key (offset ``d``, the first token) is
        ``exp(logit - LSE)`` of that one logit, which the per-chunk attribution computes anyway
        (``lse``: that normaliser, ``[H, S]``, where the caller already has it).
        Everything is summed on the tensors' device with 0/1 row weights (no host synchronisation)."""
        if self._sums["probs"].device != q.device:
            self._sums = {name: t.to(q.device) for name, t in self._sums.items()}
        self._arrays = None
        rule, q, k = self.rules[layer], q.float(), k.float()
        check_dense(rule, q.shape[1], layer)
        lse = row_logsumexp(q, k, rule, self.block) if lse is None else lse  # [H, S]: promoted to float64 exactly
        self._accumulate(layer, q, k, rule, lse)

    def _plan(self, key: tuple) -> RowPlan:
        """The :class:`RowPlan` of ``key`` = ``(tokens, rule, device)``, made once and reused by every
        layer (and prompt) of that length and rule."""
        if key not in self._plans:
            if len(self._plans) >= 16:  # prompts of many lengths: keep the memory bounded
                self._plans.clear()
            seq, rule, device = key
            self._plans[key] = RowPlan.of(seq, rule, self.max_offset, device)
        return self._plans[key]

    def _accumulate(self, layer, q, k, rule: LogitRule, lse: torch.Tensor) -> None:
        """Offset and first-token attention, and the per-chunk logit attribution of every target,
        summed over rows into the running sums of ``layer``.

        Query heads are grouped with the KV head they read (``[Hkv, group, S, D]`` against
        ``[Hkv, 1, S, D]``), so no key is repeated. Element-wise products run in float32 (the precision
        of q and k themselves); logits, every sum over rows, and the prefix sums over keys that give
        each row's visible-key total are float64."""
        K, r = self.max_offset, self.geometry.layer_rotary_dim(layer)
        layout = self.geometry.layout
        heads, seq = q.shape[0], q.shape[1]
        kv = k.shape[0]
        lse = lse.reshape(kv, heads // kv, seq)
        pairs = GroupedPairs.of(q, k, r, layout)
        qa, qb, q_pass = pairs.qa, pairs.qb, pairs.q_pass
        kg = k[:, None]  # [Hkv, 1, S, D]
        # prefix sums over keys (float64: window sums subtract two of them) give each row's visible-key sum
        prefix = torch.cumsum(torch.nn.functional.pad(kg, (0, 0, 1, 0)), dim=2, dtype=torch.float64)  # [Hkv,1,S+1,D]
        plan_key = (seq, rule, str(q.device))
        plan = self._plan(plan_key)
        ends = prefix[:, :, plan.bounds]  # [Hkv, 1, 2S, D]: each row's window end, then its start
        key_sum = (ends[:, :, :seq] - ends[:, :, seq:]).float()  # [Hkv, 1, S, D]
        sa, sb = split_pairs(key_sum[..., :r], layout)
        all_chunk = pair_terms(qa, sa, qb, sb, rule.scaling)  # [Hkv, G, S, C]
        unrotated = q.shape[-1] > r  # dims RoPE leaves alone: their own term (none where every dim turns)
        if unrotated:
            all_pass = rule.scaling * (q_pass * key_sum[..., r:]).sum(-1)  # [Hkv, G, S]
        f64 = torch.float64
        targets = K + 2
        key, hidden, weight, spread = plan.key, plan.hidden, plan.weight, plan.spread
        totals: dict[str, torch.Tensor] = {}  # sums over the row blocks, [Hkv, G, T(, C)] float64

        def add(name: str, value: torch.Tensor) -> None:  # the first block's sums are the totals so far
            totals[name] = totals[name] + value if name in totals else value

        # rows in blocks: the [Hkv, G, T, rows, C] products stay under the device's _BLOCK_ELEMENTS floats
        budget = _BLOCK_ELEMENTS.get(q.device.type, _BLOCK_ELEMENTS_ELSEWHERE)
        step = max(1, budget // max(1, heads * targets * max(1, r // 2)))
        for r0 in range(0, seq, step):
            b = slice(r0, min(seq, r0 + step))
            keys = key[:, b]  # [T, R]: rows b beside each target's key, every target at once
            target_keys = kg[:, :, keys]  # [Hkv, 1, T, R, D]: one gather, split into its pairs as views
            block = GroupedPairs(
                *(x[..., None, b, :] for x in (qa, qb, q_pass)),
                *split_pairs(target_keys[..., :r], layout),
                target_keys[..., r:],
            )
            chunk, passed, logit = target_terms(block, rule, _ALL, _ALL)  # [Hkv, G, T, R, C], [.., R], [.., R]
            probs = torch.exp((logit - lse[..., None, b]).masked_fill(hidden[:, b], -torch.inf))  # on each target
            w, sp = weight[:, b], spread[:, b]
            add("probs", probs.sum(-1))
            add("target_chunk", (chunk * w[..., None]).sum(-2, dtype=f64))
            add("other_chunk", ((all_chunk[..., None, b, :] - chunk) * sp[..., None]).sum(-2, dtype=f64))
            if unrotated:
                add("target_pass", (passed * w).sum(-1, dtype=f64))
                add("other_pass", ((all_pass[..., None, b] - passed) * sp).sum(-1, dtype=f64))
            add("target_logit", (logit * plan.weight64[:, b]).sum(-1))
        t = {name: total.reshape(heads, targets, *total.shape[3:]) for name, total in totals.items()}
        s = self._sums
        # in place on views of the running sums (``x[i] += y`` would also copy the result back)
        s["probs"][layer].add_(t["probs"])
        own = slice(0, r // 2)  # the layer's own chunks
        s["target_chunk_sum"][layer, ..., own].add_(t["target_chunk"])
        s["other_chunk_sum"][layer, ..., own].add_(t["other_chunk"])
        if unrotated:
            s["target_pass_sum"][layer].add_(t["target_pass"])
            s["other_pass_sum"][layer].add_(t["other_pass"])
        s["target_logit_sum"][layer].add_(t["target_logit"])
        # the rows counted depend on positions only: one more use of this plan (counted when read)
        self._row_plans.setdefault(layer, {}).setdefault(plan_key, [0, plan.seen_rows, plan.weight_rows])[0] += 1

"""Streaming, mergeable statistics of chunk norms over tokens.

For one tensor kind (q, k or v) the accumulator keeps, per layer, head and chunk, the token count,
mean, sum of squared deviations (``m2``, for the standard deviation) and maximum of the chunk
2-norm. While prompts run, each batch only adds to float64 running sums on the device (the token
count, the sum and the sum of squares of the norms, their maximum): a handful of kernels and no
host synchronisation per batch. The running sums are folded into mean and m2 when they are read,
and whole accumulators merge exactly with Chan et al.'s pairwise formula, so the order in which
prompts arrive changes the result only by float64 rounding.

Why float64 sums of squares are exact enough: the norms are float32, so each square is exact in
float64 (24-bit mantissas, 48-bit products); m2 = sum(x^2) - sum(x)^2 / n then carries a relative
error of about ``1e-16 * log2(n) * (1 + mean^2 / var)``, below 1e-9 even for a chunk whose norm
varies by only 0.1% over the tokens, far under the float32 rounding of the norms themselves.
"""

from __future__ import annotations

import numpy as np
import torch

from ropescope.hooks.precision import in_full_float32
from ropescope.model.geometry import chunk_norms

# most elements (batch x heads x tokens x chunks) one joint update reduces at a time, by device:
# longer prompts go through in token blocks. On a CPU the blocks stay cache-sized (2 MB of float64:
# larger fresh buffers cost more in page faults than the operators they save); elsewhere (a GPU,
# where each operator is a kernel launch) 128 MB.
JOINT_BLOCK_ELEMENTS = {"cpu": 1 << 18}
JOINT_BLOCK_ELEMENTS_ELSEWHERE = 1 << 24


class ChunkNormStats:
    """Per-(layer, head, chunk) count, mean, m2 and max of chunk norms, accumulated in float64.

    Arrays live on ``device`` while accumulating (no host synchronisation inside hooks); call
    :meth:`to_cpu` (or :meth:`to_arrays`) at the end.

    ``sizes`` (one ``(heads, chunks)`` per layer) gives layers smaller than the arrays (Gemma 4's
    256-dim sliding heads beside 512-dim global ones, or fewer KV heads on global layers): the heads
    and chunks a layer does not have are NaN in mean, m2 and max, and stay NaN through every merge.
    """

    def __init__(self, n_layers: int, n_heads: int, n_chunks: int, device="cpu", sizes=None):
        shape = (n_layers, n_heads, n_chunks)
        self._count = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self._mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self._m2 = torch.zeros(shape, dtype=torch.float64, device=device)
        self._max = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(n_layers, dtype=torch.float64, device=device)
        for layer, (heads, chunks) in enumerate(sizes or ()):
            for array in (self._mean, self._m2, self._max):
                array[layer, heads:] = torch.nan
                array[layer, :, chunks:] = torch.nan
        self._running = None  # (n, sum, sum of squares, max, tokens offered) since the last fold
        self._mask_seen, self._mask_tokens = None, None

    # the folded statistics: reading one folds the running sums in first
    count = property(lambda self: self._folded("_count"), lambda self, v: setattr(self, "_count", v))
    mean = property(lambda self: self._folded("_mean"), lambda self, v: setattr(self, "_mean", v))
    m2 = property(lambda self: self._folded("_m2"), lambda self, v: setattr(self, "_m2", v))
    max = property(lambda self: self._folded("_max"), lambda self, v: setattr(self, "_max", v))

    def _folded(self, name: str) -> torch.Tensor:
        self.fold()
        return getattr(self, name)

    @property
    def absent(self) -> torch.Tensor:
        """``[layers, heads, chunks]`` bool: True for a head or chunk its layer does not have."""
        return torch.isnan(self.mean) & torch.isnan(self.max)

    @in_full_float32
    def update(self, layer: int, norms: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch: ``norms[B, H, S, C]`` of which tokens ``mask[B, S]`` count (``H`` and ``C``
        may be fewer than the arrays hold: the layer's own heads and chunks).

        Everything stays on the device, with no host synchronisation: the batch's norms go to
        float64 and add to the running count, sum, sum of squares and maximum (a float64 sum of
        float32 or half norms cannot overflow). A token counts where every one of its norms is
        finite; tokens with a non-finite norm (half-precision overflow) are left out and counted in
        ``nonfinite``, which is read once, when the run ends.
        """
        if self._count.device != norms.device:
            self._move(norms.device)
        if self._running is None:
            self._running = _zeros_like_running(self._mean, self._count)
        n, total, squares, peak, offered = self._running
        heads, chunks = norms.shape[1], norms.shape[3]
        x = norms.double()
        mask = mask.to(norms.device)
        # a token counts where its norms' sum is finite (norms are >= 0: nothing cancels)
        keep = mask & torch.isfinite(x.sum(dim=(1, 3)))  # [B, S]
        x = torch.where(keep[:, None, :, None], x, 0.0)  # [B, H, S, C], 0 where not counted
        if mask is not self._mask_seen:  # one count per forward pass, shared by its layers
            self._mask_seen, self._mask_tokens = mask, mask.sum()
        n[layer].add_(keep.sum())
        offered[layer].add_(self._mask_tokens)
        total[layer, :heads, :chunks].add_(x.sum(dim=(0, 2)))
        squares[layer, :heads, :chunks].add_(x.square().sum(dim=(0, 2)))
        # norms are >= 0, so the zeros of tokens left out never exceed a counted token's norm
        torch.maximum(peak[layer, :heads, :chunks], x.amax(dim=(0, 2)), out=peak[layer, :heads, :chunks])

    def fold(self) -> None:
        """Fold the running sums into count, mean, m2 and max (Chan et al.'s pairwise merge), all
        layers at once; a layer that counted no token since the last fold merges as nothing."""
        if self._running is None:
            return
        n_b, total, squares, peak, offered = self._running
        self._running = None
        counts = n_b[:, None, None]
        mean_b = total / counts.clamp(min=1)
        m2_b = (squares - total * mean_b).clamp(min=0)
        max_b = torch.where(counts > 0, peak, -torch.inf)
        self._merge(n_b, mean_b, m2_b, max_b)
        self.nonfinite = self.nonfinite + (offered - n_b)

    def _merge(self, n_b, mean_b, m2_b, max_b) -> None:
        """Merge per-layer counts ``n_b[L]`` and ``mean_b[L, H, C]`` (and m2, max) into the totals."""
        n_a = self._count
        total = n_a + n_b
        share = (n_b / total.clamp(min=1))[:, None, None]  # 0 for a layer with no token (and none before)
        delta = mean_b - self._mean
        self._m2 = self._m2 + m2_b + delta * delta * (n_a[:, None, None] * share)
        self._mean = self._mean + delta * share
        self._max = torch.maximum(self._max, max_b)
        self._count = total

    def _move(self, device) -> None:
        self.fold()
        for name in ("_count", "_mean", "_m2", "_max", "nonfinite"):
            setattr(self, name, getattr(self, name).to(device))

    def merged(self, other: ChunkNormStats) -> ChunkNormStats:
        """A new accumulator equal to having seen both token sets."""
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.mean.shape} and {other.mean.shape}")
        out = ChunkNormStats(*self.mean.shape)
        absent = self.to_cpu().absent | other.to_cpu().absent
        for src in (self, other):
            src = src.to_cpu()
            out._merge(src._count, src._mean, src._m2, src._max)
            out.nonfinite += src.nonfinite
        for array in (out._mean, out._m2, out._max):
            array[absent] = torch.nan
        return out

    def to_cpu(self) -> ChunkNormStats:
        self._move("cpu")
        return self

    @property
    def std(self) -> torch.Tensor:
        """Population standard deviation of the chunk norm over tokens (0 where count < 1)."""
        counts = self.count.clamp(min=1)[:, None, None]
        return torch.sqrt(self.m2 / counts)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        self.to_cpu()
        return {
            f"{prefix}.count": self.count.numpy().copy(),
            f"{prefix}.mean": self.mean.numpy().copy(),
            f"{prefix}.m2": self.m2.numpy().copy(),
            f"{prefix}.max": self.max.numpy().copy(),
            f"{prefix}.nonfinite": self.nonfinite.numpy().copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> ChunkNormStats:
        mean = arrays[f"{prefix}.mean"]
        out = cls(*mean.shape)
        for name in ("count", "mean", "m2", "max", "nonfinite"):
            value = torch.from_numpy(np.ascontiguousarray(arrays[f"{prefix}.{name}"], dtype=np.float64))
            if value.shape != getattr(out, name).shape:
                raise ValueError(f"array {prefix}.{name} has shape {tuple(value.shape)}")
            setattr(out, name, value)
        return out


class JointUpdate:
    """One update of several accumulators at once: a layer's q, k and v chunk norms in one pass.

    ``members`` maps names (``"q"``, ``"k"``, ``"v"``) to :class:`ChunkNormStats` of the same
    layers and chunks. Their running sums live in one shared set of device buffers (heads of the
    members one after another), and each member's running sums are views into them: a layer's
    tensors are concatenated along the head axis and reduced by one set of kernels (norms, token
    keep-mask, count, sum, sum of squares, maximum), about a third of what one update per tensor
    launches. The arithmetic is :meth:`ChunkNormStats.update`'s: float32 chunk norms summed in
    float64, and a token counted for a tensor where all of that tensor's norms are finite (a
    non-finite key leaves the token's query counted), so the statistics equal three separate
    updates up to float64 summation order.
    """

    def __init__(self, members: dict[str, ChunkNormStats]):
        self.members = members
        self.names = list(members)
        self.heads = {name: stats._mean.shape[1] for name, stats in members.items()}
        self.start, first = {}, 0
        for name in self.names:
            self.start[name], first = first, first + self.heads[name]
        self._buffers = None  # n [L, T], sum, sum of squares, max [L, all heads, C], offered [L, T]
        self._views: dict[str, tuple[torch.Tensor, ...]] = {}
        self._segments: dict[tuple, torch.Tensor] = {}
        self._mask_seen, self._mask_tokens = None, None

    def _attach(self, names: list[str], device) -> None:
        """Make the named members' running sums views into the shared buffers (zeroed when a read
        folded them in since the last update)."""
        if self._buffers is None or self._buffers[0].device != torch.device(device):
            some = self.members[self.names[0]]._mean
            layers, chunks, heads = some.shape[0], some.shape[2], sum(self.heads.values())
            f64 = {"dtype": torch.float64, "device": device}
            self._buffers = (
                torch.zeros(layers, len(self.names), **f64),
                torch.zeros(layers, heads, chunks, **f64),
                torch.zeros(layers, heads, chunks, **f64),
                torch.zeros(layers, heads, chunks, **f64),  # maximum: 0, norms are >= 0
                torch.zeros(layers, len(self.names), **f64),
            )
            self._views = {}
        n, total, squares, peak, offered = self._buffers
        for name in names:
            member, views = self.members[name], self._views.get(name)
            if views is not None and member._running is views:
                continue
            if member._count.device != torch.device(device):
                member._move(device)
            member.fold()  # running sums of its own (or folded views): merged before the views restart
            t, rows = self.names.index(name), slice(self.start[name], self.start[name] + self.heads[name])
            views = (n[:, t], total[:, rows], squares[:, rows], peak[:, rows], offered[:, t])
            for view in views:
                view.zero_()
            member._running = self._views[name] = views

    @in_full_float32
    def update(self, layer: int, parts: list[tuple[str, torch.Tensor]], mask: torch.Tensor, layout: str) -> None:
        """Add one batch of layer ``layer``: ``parts`` are ``(name, x)`` with ``x[B, H, S, r]`` the
        tensor before RoPE cut to the layer's rotary dims (``H`` the layer's own heads), ``mask[B, S]``
        the tokens that count. No host synchronisation."""
        parts = sorted(parts, key=lambda part: self.names.index(part[0]))  # the buffers' order (v arrives first)
        xs = [x for _, x in parts]
        names = [name for name, _ in parts]
        alike = all(x.shape[0] == xs[0].shape[0] and x.shape[2:] == xs[0].shape[2:] for x in xs)
        if not alike or len(set(names)) != len(names):  # not one layer's tensors: one at a time
            for name, x in parts:
                self.members[name].update(layer, chunk_norms(x, layout), mask)
            return
        device = xs[0].device
        self._attach(names, device)
        mask = mask.to(device)
        if mask is not self._mask_seen:  # one count per forward pass, shared by its layers
            self._mask_seen, self._mask_tokens = mask, mask.sum()
        seq = xs[0].shape[2]
        heads = [x.shape[1] for x in xs]
        budget = JOINT_BLOCK_ELEMENTS.get(device.type, JOINT_BLOCK_ELEMENTS_ELSEWHERE)
        step = max(1, budget // max(1, xs[0].shape[0] * sum(heads) * (xs[0].shape[3] // 2)))
        first = self.names.index(names[0])
        in_order = names == self.names[first : first + len(names)]  # one run of the buffers' tensors
        whole = in_order and all(h == self.heads[name] for h, name in zip(heads, names, strict=True))
        for begin in range(0, seq, step):
            block = slice(begin, min(seq, begin + step))
            self._add_block(layer, names, [x[:, :, block] for x in xs], mask[:, block], layout, whole)
        n, _, _, _, offered = self._buffers
        if in_order:
            offered[layer, first : first + len(names)].add_(self._mask_tokens)
        else:
            for name in names:
                offered[layer, self.names.index(name)].add_(self._mask_tokens)

    def _add_block(self, layer, names, xs, mask, layout, whole: bool) -> None:
        """One token block; ``whole``: the tensors fill one run of the buffers' rows (all their heads)."""
        n, total, squares, peak, _ = self._buffers
        heads = [x.shape[1] for x in xs]
        x = torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]
        norms = chunk_norms(x, layout).double()  # [B, all heads, S, C]
        batch, _, seq, chunks = norms.shape
        # a token counts for a tensor where the sum of that tensor's norms is finite (norms are >= 0)
        if len(set(heads)) == 1:  # equal head counts: each tensor's heads are one axis
            h, t = heads[0], len(heads)
            per_tensor = norms.view(batch, t, h, seq, chunks)
            keep = mask[:, None, :] & torch.isfinite(per_tensor.sum(dim=(2, 4)))  # [B, T, S]
            kept = torch.where(keep[:, :, None, :, None], per_tensor, 0.0).view(batch, t * h, seq, chunks)
        else:
            segment = self._segment(heads, norms.device)  # the tensor of each head
            per_token = norms.sum(dim=3)  # [B, all heads, S]
            tokens = per_token.new_zeros(batch, len(heads), seq).index_add_(1, segment, per_token)
            keep = mask[:, None, :] & torch.isfinite(tokens)
            kept = torch.where(keep[:, segment, :, None], norms, 0.0)
        counted = keep.sum(dim=(0, 2))  # [T]
        sums, sums_sq, top = kept.sum(dim=(0, 2)), kept.square().sum(dim=(0, 2)), kept.amax(dim=(0, 2))
        if whole:  # the tensors' rows are one block of the buffers
            first = self.names.index(names[0])
            rows = slice(self.start[names[0]], self.start[names[0]] + sum(heads))
            n[layer, first : first + len(names)].add_(counted)
            self._add_rows(layer, rows, chunks, sums, sums_sq, top)
            return
        local = 0
        for i, (name, h) in enumerate(zip(names, heads, strict=True)):
            n[layer, self.names.index(name)].add_(counted[i])
            rows, here = slice(self.start[name], self.start[name] + h), slice(local, local + h)
            self._add_rows(layer, rows, chunks, sums[here], sums_sq[here], top[here])
            local += h

    def _add_rows(self, layer, rows, chunks, sums, sums_sq, top) -> None:
        _, total, squares, peak, _ = self._buffers
        total[layer, rows, :chunks].add_(sums)
        squares[layer, rows, :chunks].add_(sums_sq)
        torch.maximum(peak[layer, rows, :chunks], top, out=peak[layer, rows, :chunks])

    def _segment(self, heads: list[int], device) -> torch.Tensor:
        key = (tuple(heads), str(device))
        if key not in self._segments:
            counts = torch.tensor(heads)
            self._segments[key] = torch.repeat_interleave(torch.arange(len(heads)), counts).to(device)
        return self._segments[key]


def _zeros_like_running(mean: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Running count, sum, sum of squares, maximum (0: norms are >= 0) and tokens offered."""
    return (
        torch.zeros_like(count),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(count),
    )

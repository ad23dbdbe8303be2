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


def _zeros_like_running(mean: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Running count, sum, sum of squares, maximum (0: norms are >= 0) and tokens offered."""
    return (
        torch.zeros_like(count),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(count),
    )

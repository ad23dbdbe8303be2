"""Streaming, mergeable statistics of chunk norms over tokens.

For one tensor kind (q, k or v) the accumulator keeps, per layer, head and chunk, the token count,
mean, sum of squared deviations (``m2``, for the standard deviation) and maximum of the chunk
2-norm. Batches and whole accumulators merge exactly with Chan et al.'s pairwise formula, so the
order in which prompts arrive changes the result only by float64 rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from ropescope.hooks.precision import in_full_float32


class ChunkNormStats:
    """Per-(layer, head, chunk) count, mean, m2 and max of chunk norms, accumulated in float64.

    Arrays live on ``device`` while accumulating (no host synchronisation inside hooks); call
    :meth:`to_numpy` at the end.

    ``sizes`` (one ``(heads, chunks)`` per layer) gives layers smaller than the arrays (Gemma 4's
    256-dim sliding heads beside 512-dim global ones, or fewer KV heads on global layers): the heads
    and chunks a layer does not have are NaN in mean, m2 and max, and stay NaN through every merge.
    """

    def __init__(self, n_layers: int, n_heads: int, n_chunks: int, device="cpu", sizes=None):
        shape = (n_layers, n_heads, n_chunks)
        self.count = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(shape, dtype=torch.float64, device=device)
        self.max = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(n_layers, dtype=torch.float64, device=device)
        for layer, (heads, chunks) in enumerate(sizes or ()):
            for array in (self.mean, self.m2, self.max):
                array[layer, heads:] = torch.nan
                array[layer, :, chunks:] = torch.nan

    @property
    def absent(self) -> torch.Tensor:
        """``[layers, heads, chunks]`` bool: True for a head or chunk its layer does not have."""
        return torch.isnan(self.mean) & torch.isnan(self.max)

    @in_full_float32
    def update(self, layer: int, norms: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch: ``norms[B, H, S, C]`` of which tokens ``mask[B, S]`` count (``H`` and ``C``
        may be fewer than the arrays hold: the layer's own heads and chunks).

        Everything stays on the device, with no host synchronisation: the batch's tokens are summed
        in float64 (so no sum overflows, whatever float32 or half precision allowed), its squared
        deviations taken around its own mean, then merged into the float64 totals (a batch with no
        counted token merges as nothing). Tokens with a non-finite norm (half-precision overflow) are
        counted in ``nonfinite`` and left out; that count is read once, when the run ends.
        """
        if self.count.device != norms.device:
            self._move(norms.device)
        x = norms.double()
        # a token counts where every one of its norms is finite, i.e. where their sum is (norms are
        # >= 0, so nothing cancels; a float64 sum of float32 or half norms cannot overflow)
        finite = torch.isfinite(x.sum(dim=(1, 3)))  # [B, S]
        mask = mask.to(norms.device)
        keep = mask & finite
        n = keep.sum(dtype=torch.float64)
        self.nonfinite[layer] += mask.sum() - n
        counted = keep[:, None, :, None]
        x = torch.where(counted, x, 0.0)  # [B, H, S, C], 0 where not counted
        batch_mean = x.sum(dim=(0, 2)) / n.clamp(min=1)
        deviation = torch.where(counted, x - batch_mean[None, :, None, :], 0.0)
        batch_m2 = deviation.square_().sum(dim=(0, 2))
        batch_max = torch.where(counted, x, -torch.inf).amax(dim=(0, 2))
        self._merge_layer(layer, n, batch_mean, batch_m2, batch_max)

    def _merge_layer(self, layer, n_b, mean_b, m2_b, max_b) -> None:
        """Merge ``mean_b[h, c]`` (and m2, max) into the first ``h`` heads and ``c`` chunks of ``layer``."""
        block = (layer, slice(0, mean_b.shape[0]), slice(0, mean_b.shape[1]))
        n_a = self.count[layer]
        total = n_a + n_b
        share = n_b / total.clamp(min=1)  # 0 for a batch with no token (and no token before it)
        delta = mean_b - self.mean[block]
        self.m2[block].add_(m2_b).addcmul_(delta * (n_a * share), delta)
        self.mean[block].addcmul_(delta, share)
        self.max[block] = torch.maximum(self.max[block], max_b)
        self.count[layer] = total

    def _move(self, device) -> None:
        for name in ("count", "mean", "m2", "max", "nonfinite"):
            setattr(self, name, getattr(self, name).to(device))

    def merged(self, other: ChunkNormStats) -> ChunkNormStats:
        """A new accumulator equal to having seen both token sets."""
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.mean.shape} and {other.mean.shape}")
        out = ChunkNormStats(*self.mean.shape)
        absent = self.to_cpu().absent | other.to_cpu().absent
        for src in (self, other):
            src = src.to_cpu()
            for layer in range(src.mean.shape[0]):
                if src.count[layer] > 0:
                    out._merge_layer(layer, src.count[layer], src.mean[layer], src.m2[layer], src.max[layer])
            out.nonfinite += src.nonfinite
        for array in (out.mean, out.m2, out.max):
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

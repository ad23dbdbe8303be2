"""Chunk-norm statistics split by token position, collected in the same streaming pass.

Positions (0-based, the ones RoPE rotates by) are cut into log-spaced buckets with fixed edges
``0, 16, 64, 256, 1024, 4096, ...`` (x4 each), the same for every run of a model, so profiles of
different prompt sets merge bucket by bucket. Each bucket holds a full
:class:`~ropescope.hooks.stats.ChunkNormStats` over the tokens whose position falls in it; merging
all buckets gives back the whole-profile statistics (up to float32 rounding of the per-batch sums,
about 1e-7 relative: a bucket sums fewer tokens at a time).
"""

from __future__ import annotations

import numpy as np
import torch

from ropescope.hooks.precision import in_full_float32
from ropescope.hooks.stats import ChunkNormStats

BASE_EDGES = (0, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


def position_edges(context: int | None) -> tuple[int, ...]:
    """Bucket edges from 0 up to the first edge at or beyond ``context`` tokens (the model's context
    length; 1,048,576 when it states none)."""
    context = context or BASE_EDGES[-1]
    edges = [e for e in BASE_EDGES if e < context]
    upper = next((e for e in BASE_EDGES if e >= context), None)
    edges.append(upper if upper is not None else int(context))
    return tuple(edges)


def bucket_labels(edges) -> list[str]:
    """``"0-15"``, ``"16-63"``, ... (positions, inclusive)."""
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def bucket_slices(edges, positions: torch.Tensor) -> list[slice | None] | None:
    """Each bucket's column range of a batch whose rows share one position row (``None`` for an
    empty bucket), or ``None`` when rows differ. Positions rise along a row, so a bucket's tokens
    are contiguous."""
    if not bool((positions == positions[:1]).all()):
        return None
    row = positions[0].cpu()
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        start, end = int(torch.searchsorted(row, lo)), int(torch.searchsorted(row, hi))
        out.append(slice(start, end) if end > start else None)
    return out


class PositionStats:
    """One :class:`ChunkNormStats` per position bucket, for one tensor kind (q, k or v)."""

    def __init__(self, edges, n_layers: int, n_heads: int, n_chunks: int, sizes=None):
        self.edges = tuple(int(e) for e in edges)
        self.buckets = [ChunkNormStats(n_layers, n_heads, n_chunks, sizes=sizes) for _ in range(len(self.edges) - 1)]

    @in_full_float32
    def update(self, layer: int, norms: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, slices=None) -> None:
        """Add ``norms[B, H, S, C]`` of counted tokens ``mask[B, S]`` at ``positions[B, S]``.

        ``slices`` (from :func:`bucket_slices` of the same positions, computed once per forward
        pass by the caller) are the buckets' column ranges; without them, or where rows differ in
        positions, each bucket takes a token mask instead."""
        mask = mask.to(norms.device)
        slices = bucket_slices(self.edges, positions) if slices is None else slices
        if slices is not None:
            for bucket, columns in zip(self.buckets, slices, strict=True):
                if columns is not None:
                    bucket.update(layer, norms[:, :, columns], mask[:, columns])
            return
        positions = positions.to(norms.device)
        for bucket, lo, hi in zip(self.buckets, self.edges[:-1], self.edges[1:], strict=True):
            inside = mask & (positions >= lo) & (positions < hi)
            if bool(inside.any()):
                bucket.update(layer, norms, inside)

    def merged(self, other: PositionStats) -> PositionStats:
        if self.edges != other.edges:
            raise ValueError(f"position buckets differ: {self.edges} vs {other.edges}")
        out = PositionStats(self.edges, *self.buckets[0].mean.shape)
        out.buckets = [a.merged(b) for a, b in zip(self.buckets, other.buckets, strict=True)]
        return out

    def whole(self) -> ChunkNormStats:
        """All buckets merged: the statistics of every counted token, whatever its position."""
        out = ChunkNormStats(*self.buckets[0].mean.shape)
        for bucket in self.buckets:
            out = out.merged(bucket)
        return out

    def to_cpu(self) -> PositionStats:
        for bucket in self.buckets:
            bucket.to_cpu()
        return self

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {}
        for i, bucket in enumerate(self.buckets):
            out.update(bucket.to_arrays(f"{prefix}.{i}"))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, edges) -> PositionStats:
        first = ChunkNormStats.from_arrays(arrays, f"{prefix}.0")
        out = cls(edges, *first.mean.shape)
        out.buckets = [ChunkNormStats.from_arrays(arrays, f"{prefix}.{i}") for i in range(len(out.edges) - 1)]
        return out

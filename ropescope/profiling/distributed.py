"""Data-parallel profiling on existing engines: ``torchrun`` / ``accelerate launch`` start the
processes and ``torch.distributed`` (gloo on CPU, nccl on GPUs) merges their statistics.

Each process profiles every ``world_size``-th prompt of the length-sorted prompt list (so the
shards have similar lengths); the reducers are then all-gathered and merged in rank order with the
same exact pairwise formula as a single process uses, so the merged profile equals the
single-process one up to float64 summation order.
"""

from __future__ import annotations

import torch

from ropescope.hooks.stats import ChunkNormStats


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def gather_merge(stats: ChunkNormStats) -> ChunkNormStats:
    """Merge one accumulator across all processes (every process gets the same result)."""
    if not is_distributed():
        return stats
    local = stats.to_cpu()
    parts: list = [None] * torch.distributed.get_world_size()
    arrays = {name: getattr(local, name).clone() for name in ("count", "mean", "m2", "max", "nonfinite")}
    torch.distributed.all_gather_object(parts, arrays)
    merged = ChunkNormStats(*local.mean.shape)
    for part in parts:
        other = ChunkNormStats(*local.mean.shape)
        for name, value in part.items():
            setattr(other, name, value)
        merged = merged.merged(other)
    return merged


def gather_max(value: int) -> int:
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.long)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())

"""Full float32 precision for ropescope's own matrix products, whatever the user allowed.

On an Ampere or later GPU a user (or a library) may let float32 matrix products run in TF32, which
keeps about 10 mantissa bits: the token sums of the chunk-norm statistics and the q.k products of
the head scores would then lose about three digits without a word. :func:`full_float32` switches
CUDA matmuls to IEEE float32 for the duration of ropescope's own computation inside a hook and
restores the caller's setting before the model runs on (its own products keep whatever it chose).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Inside the block CUDA float32 matmuls are IEEE float32 (no TF32); the setting comes back after."""
    matmul = getattr(torch.backends.cuda, "matmul", None)
    before = getattr(matmul, "fp32_precision", None)
    if before is None or before == "ieee":
        yield
        return
    matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def in_full_float32(fn: Callable) -> Callable:
    """Decorator form of :func:`full_float32`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with full_float32():
            return fn(*args, **kwargs)

    return wrapper

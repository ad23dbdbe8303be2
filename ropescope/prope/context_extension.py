"""Perplexity past a model's trained length, unscaled and under each context-extension scaling.

One table and one set of loss-by-position curves, all on the same tokens of a long text:

- ``trained``: the unmodified model in windows of its configured context ``L`` (the reference);
- ``none``: the unmodified model in windows of ``factor * L`` tokens (length extrapolation, RoPE
  turning its chunks past any angle seen in training);
- ``linear:F``, ``yarn:F``, ``llama3:F``: windows of ``factor * L`` tokens with the model's RoPE
  rescaled at inference by :func:`~ropescope.model.rope_scaling.rope_scaling` (no fine-tuning).

The extended settings read ``windows`` windows of ``factor * L`` tokens; ``trained`` reads
``factor * windows`` windows of ``L`` tokens, the same stretch of text (windows that start with BOS
hold one token fewer of it, so the spans differ by at most ``factor * windows`` tokens).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ropescope.errors import RopescopeError
from ropescope.model.anatomy import inspect_model
from ropescope.model.rope_scaling import parse_rope_scaling, rope_scaling
from ropescope.prope.perplexity import perplexity

SCALING_TYPES = ("linear", "yarn", "llama3")


def context_extension(
    model,
    tokenizer,
    text: str,
    *,
    factor: float = 2.0,
    types: Sequence[str] = SCALING_TYPES,
    windows: int = 1,
    bucket: int | None = None,
    batch_size: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table, curves)`` for the model's configured context ``L`` and ``factor``.

    ``table``: one row per setting (``trained``, ``none``, then each of ``types`` as ``TYPE:F``):
    ``setting``, ``context`` (tokens per window), ``windows``, ``tokens`` (predicted), ``nll``
    (mean, nats/token), ``perplexity``, ``ratio`` (over ``trained``), ``seconds`` (wall clock).

    ``curves``: the mean nll (nats/token) of the tokens predicted at window positions
    ``[start, start + bucket)``, one column per setting (``trained`` stops at ``L``), over all the
    setting's windows; ``bucket`` defaults to ``L / 8``.
    """
    anatomy = inspect_model(model)
    trained = anatomy.context_length
    if not trained:
        raise RopescopeError(f"model type {anatomy.model_type!r} configures no context length to extend")
    if not factor > 1:
        raise RopescopeError(f"factor must be > 1, got {factor}")
    extended = int(round(trained * factor))
    bucket = bucket or max(trained // 8, 1)
    specs = [f"{kind}:{factor:g}" for kind in types]
    for spec in specs:
        parse_rope_scaling(spec)  # refuse a bad type before any long run
    settings = [("trained", trained, None), ("none", extended, None), *[(s, extended, s) for s in specs]]
    rows, curves = [], {}
    for name, context, spec in settings:
        if progress:
            progress(name)
        count = windows * int(round(factor)) if name == "trained" else windows
        options = {"context": context, "windows": count, "bucket": bucket, "batch_size": batch_size}
        started = time.perf_counter()
        if spec is None:
            result = perplexity(model, tokenizer, text, extrapolate=name == "none", **options)
        else:
            with rope_scaling(model, spec) as scaled:
                result = perplexity(scaled, tokenizer, text, **options)
        seconds = time.perf_counter() - started
        curves[name] = result.pop("nll_by_position")
        rows.append({"setting": name, "context": context, **result, "seconds": seconds})
    table = pd.DataFrame(rows)[["setting", "context", "windows", "tokens", "nll", "perplexity", "seconds"]]
    table.insert(6, "ratio", table["perplexity"] / table["perplexity"].iloc[0])
    n = max(len(c) for c in curves.values())
    frame = pd.DataFrame({"start": np.arange(n) * bucket})
    for name, values in curves.items():
        frame[name] = np.concatenate([values, np.full(n - len(values), np.nan)])
    return table, frame

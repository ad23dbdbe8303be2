"""What the massive query and key chunks do: perplexity with them ablated, against a control.

Jin et al. (ICML 2025) ablate the massive values of q and k and find that language modelling that
needs contextual knowledge breaks while a control ablation does not. :func:`massive_ablation` runs
the same test per RoPE chunk on any text, with the chunks
:meth:`~ropescope.profiling.result.Profile.massive_values` flags, in four conditions:

- ``none``: the model as it is;
- ``zero``: every flagged chunk of q (that query head) and k (that key head) set to 0 before RoPE;
- ``running mean``: every flagged chunk replaced by its mean over the prompt's tokens so far (token
  ``i`` gets the mean of tokens ``0..i``: its size and average direction stay, its variation from
  token to token goes, and no later token leaks into an earlier one);
- ``zero control``: as many other chunks of the same heads zeroed, drawn at random among the
  heads' non-massive chunks (``draws`` times; the mean is reported with its spread).

Perplexity is per token on windows of ``context`` tokens, as :func:`~ropescope.prope.perplexity.perplexity`
computes it; ``change`` is the perplexity over the unablated one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ropescope.errors import RopescopeError
from ropescope.hooks import intervene, verify_geometry
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import chunk_dims
from ropescope.prope.perplexity import perplexity

MODES = ("zero", "running mean")


def chunk_editor(dims: dict[int, np.ndarray], targets: dict[tuple[int, int], list[int]], mode: str) -> Callable:
    """An ``edit_q`` / ``edit_k`` for :func:`~ropescope.hooks.intervene` that zeroes (``mode="zero"``)
    or replaces by their running mean over tokens (``"running mean"``) the chunks
    ``targets[(layer, head)]`` of the pre-RoPE ``[batch, heads, tokens, dims]`` tensor; ``head``
    indexes that tensor's own heads (query heads for q, key heads for k); ``dims[layer]`` is the
    layer's ``[chunks, 2]`` chunk dims (:func:`~ropescope.model.geometry.chunk_dims`)."""
    if mode not in MODES:
        raise RopescopeError(f"unknown ablation {mode!r}; expected one of {', '.join(MODES)}")

    def edit(layer, x):
        hits = [(head, chunks) for (lay, head), chunks in targets.items() if lay == layer and len(chunks)]
        if not hits:
            return x
        x = x.clone()
        for head, chunks in hits:
            columns = torch.as_tensor(dims[layer][np.asarray(chunks)].ravel(), device=x.device)
            part = x[:, head].index_select(-1, columns)  # [batch, tokens, 2 x chunks]
            if mode == "zero":
                part = torch.zeros_like(part)
            else:
                counts = torch.arange(1, part.shape[1] + 1, device=x.device, dtype=torch.float32)[None, :, None]
                part = (part.float().cumsum(dim=1) / counts).to(x.dtype)
            x[:, head] = x[:, head].index_copy(-1, columns, part)
        return x

    return edit


def massive_ablation(
    model,
    tokenizer,
    text: str,
    massive: pd.DataFrame,
    *,
    context: int = 512,
    draws: int = 3,
    seed: int = 0,
    batch_size: int = 4,
) -> pd.DataFrame:
    """Perplexity of ``model`` on ``text`` with the chunks of ``massive`` (a
    :meth:`~ropescope.profiling.result.Profile.massive_values` table of this model) ablated; see the
    module docstring. Columns: ``condition``, ``draw`` (0 for the deterministic conditions),
    ``chunks`` (chunks ablated), ``perplexity``, ``nll`` (nats/token), ``change`` (ratio to
    ``none``)."""
    anatomy = inspect_model(model)
    verify_geometry(anatomy)
    geometry = anatomy.geometry
    targets = {"q": {}, "k": {}}
    for row in massive.itertuples(index=False):
        if row.tensor not in targets:
            raise RopescopeError(f"massive values of tensor {row.tensor!r} cannot be ablated; only q and k")
        heads = anatomy.n_heads if row.tensor == "q" else anatomy.layer_kv_heads(int(row.layer))
        if not (0 <= row.layer < geometry.n_layers and 0 <= row.head < heads):
            raise RopescopeError(
                f"massive chunk ({row.tensor}, layer {row.layer}, head {row.head}) is not in this model"
            )
        if not 0 <= row.chunk < geometry.layer_chunks(int(row.layer)):
            raise RopescopeError(f"chunk {row.chunk} of layer {row.layer} is not in this model")
        if row.tensor == "k" and geometry.layers[int(row.layer)].kv_source is not None:
            raise RopescopeError(
                f"layer {row.layer} reuses another layer's keys: its key chunks cannot be ablated here"
            )
        targets[row.tensor].setdefault((int(row.layer), int(row.head)), []).append(int(row.chunk))
    total = sum(len(c) for t in targets.values() for c in t.values())
    if total == 0:
        raise RopescopeError("no massive chunk to ablate (the table is empty)")
    dims = {layer: chunk_dims(geometry, layer) for layer in range(geometry.n_layers)}

    def run(chosen: dict, mode: str) -> dict:
        with intervene(
            model,
            edit_q=chunk_editor(dims, chosen["q"], mode) if chosen["q"] else None,
            edit_k=chunk_editor(dims, chosen["k"], mode) if chosen["k"] else None,
        ):
            return perplexity(model, tokenizer, text, context=context, batch_size=batch_size)

    rows = [
        {
            "condition": "none",
            "draw": 0,
            "chunks": 0,
            **_numbers(perplexity(model, tokenizer, text, context=context, batch_size=batch_size)),
        }
    ]
    for mode in MODES:
        rows.append({"condition": mode, "draw": 0, "chunks": total, **_numbers(run(targets, mode))})
    rng = np.random.default_rng(seed)
    for draw in range(1, draws + 1):
        control = {"q": {}, "k": {}}
        for tensor, chosen in targets.items():
            for (layer, head), chunks in chosen.items():
                others = np.setdiff1d(np.arange(geometry.layer_chunks(layer)), chunks)
                if len(others) < len(chunks):
                    raise RopescopeError(f"layer {layer} head {head} has too few other chunks for a control")
                control[tensor][(layer, head)] = sorted(rng.choice(others, size=len(chunks), replace=False).tolist())
        rows.append({"condition": "zero control", "draw": draw, "chunks": total, **_numbers(run(control, "zero"))})
    table = pd.DataFrame(rows)
    table["change"] = table["perplexity"] / table["perplexity"].iloc[0]
    return table


def _numbers(result: dict) -> dict:
    return {"perplexity": result["perplexity"], "nll": result["nll"]}

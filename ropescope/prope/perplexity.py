"""Perplexity of a causal LM on held-out text, and the p-RoPE table of a pretrained model.

The text is tokenised once (no special tokens) and cut into non-overlapping windows of
``context`` tokens; each window starts with the tokenizer's BOS when it has one (Gemma expects
it), and every other token of the window is predicted from the ones before it. Perplexity is
``exp(mean negative log-likelihood)`` over all predicted tokens (natural log). Logits are formed
for 256 predicting positions at a time, so a 262k-word vocabulary never needs a full ``S x vocab``
matrix.

The logits are the LM head's output times the model's own output multiplier (Granite divides by
``logits_scaling``, Cohere multiplies by ``logit_scale``, Falcon-H1 by ``lm_head_multiplier``, ...),
then soft-capped where the model does (Gemma 2/3 ``final_logit_softcapping``, RecurrentGemma
``logits_soft_cap``). The multiplier is
not guessed from config names: :func:`output_scale` measures it against the model's own logits on
the first window and checks that it reproduces them to 1e-4 of their largest magnitude; a model
whose logits are anything else is refused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ropescope.errors import NumericsError, PromptError, RopescopeError, UnsupportedModelError
from ropescope.model.anatomy import inspect_model
from ropescope.model.modes import eval_mode
from ropescope.profiling.run import pad_batch
from ropescope.prope.frequencies import VARIANTS, check_p
from ropescope.prope.interventions import below_band_cutoffs, check_reached, p_rope, stop_below

BELOW_BAND = "below-band"  # no rotation below each layer's measured frequency band (Oka et al., ICLR 2026)


def token_windows(
    tokenizer, text: str, context: int, model=None, *, extrapolate: bool = False, windows: int | None = None
) -> list[list[int]]:
    """Windows of at most ``context`` tokens (BOS first where the tokenizer has one), the first
    ``windows`` of them (all by default). A ``context`` longer than the model's configured context is
    refused unless ``extrapolate`` (evaluating past the trained length on purpose), and so is a
    window past the length where the model's rotary module switches frequencies (LongRoPE, dynamic
    NTK: :attr:`~ropescope.model.anatomy.ModelAnatomy.frequencies_fixed_up_to`)."""
    if context < 2:
        raise PromptError(f"context must be at least 2 tokens, got {context}")
    if windows is not None and windows < 1:
        raise PromptError(f"windows must be at least 1, got {windows}")
    limit = inspect_model(model).context_length if model is not None else None
    if limit and context > limit and not extrapolate:
        raise PromptError(
            f"context {context} exceeds the model's context of {limit} tokens "
            "(--extrapolate evaluates past it on purpose; --rope-scaling extends it)"
        )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    adds_bos = bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]
    step = context - 1 if adds_bos else context
    found = [([bos] if adds_bos else []) + ids[i : i + step] for i in range(0, len(ids), step)]
    found = [w for w in found if len(w) >= 2][:windows]
    if model is not None and found:  # the hooks' self-check and p-RoPE hold for one set of frequencies
        inspect_model(model).check_fixed_frequencies(max(len(w) for w in found), "a window")
    if not found:
        raise PromptError(f"the evaluation text has {len(ids)} tokens; at least 2 are needed")
    return found


def perplexity(
    model,
    tokenizer,
    text: str,
    *,
    context: int = 512,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    windows: int | None = None,
    extrapolate: bool = False,
    bucket: int | None = None,
) -> dict:
    """``{"perplexity", "nll" (mean, nats/token), "tokens" (predicted), "windows"}`` of ``text``
    (its first ``windows`` windows; ``extrapolate``: see :func:`token_windows`).

    With ``bucket``, also ``"nll_by_position"``: the mean negative log-likelihood (nats/token) of
    the tokens predicted at window positions ``[b * bucket, (b + 1) * bucket)`` for each ``b``
    (position = the predicted token's index in its window, 1 = the first predicted), over all
    windows; NaN where no window reaches. How the loss grows past a trained length shows there.
    """
    if bucket is not None and bucket < 1:
        raise PromptError(f"bucket must be at least 1 token, got {bucket}")
    anatomy = inspect_model(model)
    windows = token_windows(tokenizer, text, context, anatomy, extrapolate=extrapolate, windows=windows)
    base, device = anatomy.base, anatomy.device
    head = language_model_head(anatomy.hf)
    softcap = final_softcap(anatomy.config)
    with eval_mode(anatomy.runnable):
        scale = output_scale(anatomy, windows[0])
    total, count = 0.0, 0
    n_buckets = -(-context // bucket) if bucket else 0
    by_position = torch.zeros(2, n_buckets, dtype=torch.float64, device=device)  # summed nll, tokens per bucket
    with torch.inference_mode(), eval_mode(anatomy.runnable):  # no dropout: the model as it is used
        for start in range(0, len(windows), batch_size):
            rows = windows[start : start + batch_size]
            ids, mask = pad_batch(rows, 0)
            ids, mask = ids.to(device), mask.to(device)
            hidden = _last_hidden(base, anatomy, input_ids=ids, attention_mask=mask, use_cache=False)
            nll, n = _window_nll(hidden, ids, mask, head, softcap, scale, by_position, bucket)
            total, count = total + nll, count + n
            if progress:
                progress(start + len(rows))
    mean = total / count
    result = {"perplexity": math.exp(mean), "nll": mean, "tokens": count, "windows": len(windows)}
    if bucket:
        sums = by_position.cpu().numpy()  # read once, at the end
        with np.errstate(invalid="ignore", divide="ignore"):
            result["nll_by_position"] = sums[0] / sums[1]
    return result


def language_model_head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What turns the decoder's last hidden state into logits (up to the constant multiple and final
    soft-cap :func:`output_scale` measures and checks): the output embeddings, after the model's own
    prediction head where it has one in front of them (ModernBERT-decoder: ``decoder(lm_head(h))``,
    a dense layer, activation and norm before the vocabulary projection)."""
    output = model.get_output_embeddings()
    before = getattr(model, "lm_head", None)
    if isinstance(before, torch.nn.Module) and before is not output and output is not None:
        return lambda hidden: output(before(hidden))
    return output


SCALE_TOKENS = 32  # positions of the first window whose logits measure the output multiplier


def _last_hidden(base, anatomy, **inputs) -> torch.Tensor:
    out = base(**inputs)
    hidden = getattr(out, "last_hidden_state", None)
    if base is anatomy.hf or hidden is None:
        raise UnsupportedModelError(
            f"perplexity needs the decoder's last hidden state, which model type {anatomy.model_type!r} "
            "does not return apart from its logits"
        )
    return hidden


@torch.inference_mode()
def output_scale(anatomy, window: list[int]) -> float:
    """The model's multiplier between its LM head's output and its logits (before any final
    soft-cap), measured by least squares on the first :data:`SCALE_TOKENS` positions of ``window``
    against the model's own forward, and required to reproduce those logits (after the soft-cap) to
    1e-4 of their largest magnitude (2e-2 in half precision)."""
    ids = torch.tensor([window[:SCALE_TOKENS]], device=anatomy.device)
    head = language_model_head(anatomy.hf)
    softcap = final_softcap(anatomy.config)
    own = anatomy.hf(input_ids=ids, use_cache=False).logits[0].double()
    raw = head(_last_hidden(anatomy.base, anatomy, input_ids=ids, use_cache=False)[0]).double()
    if not (torch.isfinite(own).all() and torch.isfinite(raw).all()):
        dtype = str(anatomy.dtype).removeprefix("torch.")
        raise NumericsError(
            f"the unmodified model's own logits are not finite (NaN/inf) in {dtype}, before any p-RoPE change: "
            "half-precision overflow; use --dtype bfloat16 or --dtype float32"
        )
    target = own
    if softcap:
        target = torch.atanh((own / softcap).clamp(-1 + 1e-12, 1 - 1e-12)) * softcap
    scale = float((raw * target).sum() / (raw * raw).sum().clamp(min=1e-300))
    ours = raw * scale
    if softcap:
        ours = torch.tanh(ours / softcap) * softcap
    tolerance = 1e-4 if anatomy.dtype in (torch.float32, torch.float64) else 2e-2
    error = float((ours - own).abs().max() / own.abs().max().clamp(min=1e-30))
    if not (error <= tolerance and math.isfinite(scale)):
        raise UnsupportedModelError(
            f"model type {anatomy.model_type!r}: its logits are not a constant multiple of its LM head's output "
            f"(best multiple {scale:.4g} misses by {error:.1e} of their largest magnitude), so ropescope cannot "
            "compute its perplexity window by window"
        )
    return 1.0 if abs(scale - 1.0) < 1e-6 else scale


LOGIT_ROWS = 256  # positions whose logits are formed at once: 256 x 262,144 float32 = 268 MB for Gemma


def final_softcap(config) -> float | None:
    """The soft cap of the model's output logits (``cap * tanh(logits / cap)``): Gemma 2/3's
    ``final_logit_softcapping``, RecurrentGemma's ``logits_soft_cap``; None where there is none."""
    for name in ("final_logit_softcapping", "logits_soft_cap"):
        cap = getattr(config, name, None)
        if cap:
            return float(cap)
    return None


def _window_nll(
    hidden, ids, mask, head, softcap, scale: float = 1.0, by_position=None, bucket=None
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every predicted token of a padded batch, and their
    number. Only real (unpadded) positions get logits, :data:`LOGIT_ROWS` at a time, each block a
    contiguous ``[rows, vocab]`` matrix (cross-entropy over a transposed ``[batch, vocab, seq]``
    view was half the cost of a window on CPU). With ``bucket``, each token's nll and a count are
    also added to ``by_position[:, position // bucket]`` (see :func:`perplexity`)."""
    keep = mask[:, 1:].bool()
    states = hidden[:, :-1][keep]  # [N, hidden]: the positions that predict a real next token
    targets = ids[:, 1:][keep]
    if bucket:  # window position of each predicted token (1 = the second token of its window)
        where = torch.arange(1, ids.shape[1], device=ids.device).expand_as(keep)[keep] // bucket
    total = torch.zeros((), dtype=torch.float64, device=hidden.device)
    for i in range(0, len(targets), LOGIT_ROWS):
        logits = head(states[i : i + LOGIT_ROWS]).float()
        if scale != 1.0:
            logits = logits * scale
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        nll = torch.nn.functional.cross_entropy(logits, targets[i : i + LOGIT_ROWS], reduction="none")
        total += nll.double().sum()  # per-token values summed in float64
        if bucket:  # on the device: no copy to the host per block
            by_position[0].index_add_(0, where[i : i + LOGIT_ROWS], nll.double())
            by_position[1].index_add_(0, where[i : i + LOGIT_ROWS], torch.ones_like(nll, dtype=torch.float64))
    return float(total), len(targets)


def prope_table(
    model,
    tokenizer,
    text: str,
    ps: Sequence[float],
    variants: Sequence[str] = VARIANTS,
    *,
    context: int = 512,
    batch_size: int = 4,
    layers=None,
    progress: Callable[[str], None] | None = None,
    windows: int | None = None,
    extrapolate: bool = False,
    band: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Perplexity of the unmodified model and of every (variant, p) at inference, no fine-tuning.

    One row per setting: ``variant`` (``rope`` for the unmodified model), ``p``, ``perplexity``,
    ``nll``, ``change`` (perplexity minus the unmodified one), ``ratio`` (over it) and ``note``
    (why a perplexity is ``inf``/``nan``: non-finite logits; empty otherwise). A non-finite
    unmodified perplexity is refused (:class:`NumericsError`): there is nothing to compare with. p = 1 of any
    variant is the unmodified model exactly (tested), so it is not re-run. ``windows`` and
    ``extrapolate`` as in :func:`perplexity`.

    ``variants`` may also hold ``"below-band"`` (:data:`BELOW_BAND`): every chunk slower than its
    layer's measured frequency band stops rotating (``band``: a
    :meth:`~ropescope.profiling.result.Profile.frequency_band` table of this model, required then).
    Its one row has ``p`` = the fraction of the rotating chunks that keep rotating.
    """
    for variant in variants:
        if variant == BELOW_BAND:
            if band is None:
                raise RopescopeError(
                    "the below-band variant needs the model's measured frequency band: band=profile.frequency_band()"
                )
            continue
        for p in ps:
            check_p(p, variant)
    options = {"context": context, "batch_size": batch_size, "windows": windows, "extrapolate": extrapolate}
    token_windows(tokenizer, text, context, model, extrapolate=extrapolate, windows=windows)  # fail early
    anatomy = inspect_model(model)
    chosen = range(anatomy.n_layers) if layers is None else layers
    rotating = [i for i in chosen if i in anatomy.geometry.rotating_layers]  # what p-RoPE must reach
    if progress:
        progress("rope")
    reference = perplexity(model, tokenizer, text, **options)
    rows = [{"variant": "rope", "p": 1.0, **reference}]
    for variant in variants:
        if variant == BELOW_BAND:
            rows.append(_below_band_row(model, tokenizer, text, band, chosen, anatomy, options, progress))
            continue
        for p in ps:
            if p == 1.0:
                continue
            if progress:
                progress(f"{variant} p={p:g}")
            with p_rope(model, p, variant, layers) as reached:
                result = perplexity(model, tokenizer, text, **options)
            check_reached(reached, rotating, anatomy.model_type)
            rows.append({"variant": variant, "p": float(p), **result})
    table = pd.DataFrame(rows)
    finite = np.isfinite(table["perplexity"].to_numpy(dtype=float))
    table["note"] = np.where(finite, "", "non-finite logits (NaN/inf): numeric overflow in this dtype")
    if not finite[0]:
        raise NumericsError(
            f"the unmodified model's perplexity is {table['perplexity'][0]} (non-finite logits); "
            "use --dtype bfloat16 or --dtype float32"
        )
    if not finite.all():
        lost = ", ".join(f"{r.variant} p={r.p:g}" for r in table[~finite].itertuples())
        warnings.warn(f"perplexity is not finite for {lost}: non-finite logits (overflow in this dtype)", stacklevel=2)
    table["change"] = table["perplexity"] - reference["perplexity"]
    table["ratio"] = table["perplexity"] / reference["perplexity"]
    return table


def _below_band_row(model, tokenizer, text, band, chosen, anatomy, options, progress) -> dict:
    """The ``below-band`` row of :func:`prope_table`."""
    band = band[band.layer.isin(list(chosen))]
    missing = sorted(set(chosen) & set(anatomy.geometry.rotating_layers) - set(band.layer))
    if missing:
        raise RopescopeError(f"the frequency band has no row for rotating layer(s) {missing[:8]}: profile them first")
    if progress:
        progress(BELOW_BAND)
    cutoffs = below_band_cutoffs(band)
    with stop_below(model, cutoffs) as reached:
        result = perplexity(model, tokenizer, text, **options)
    check_reached(reached, cutoffs, anatomy.model_type)
    kept = 1.0 - band.chunks_below.sum() / max(band.rotating_chunks.sum(), 1)
    return {"variant": BELOW_BAND, "p": float(kept), **result}

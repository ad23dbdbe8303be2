"""Run a prompt set through a model under :func:`~ropescope.hooks.capture` and build a Profile.

Prompts are tokenised one by one (with the tokenizer's special tokens, so Gemma's BOS leads each),
cut to ``max_tokens``, sorted by length and batched with right padding; only real tokens are
counted. The forward pass runs the base model (no language-model head: at 8k tokens Gemma's
262k-word logits alone would take 8 GB).
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from collections.abc import Callable, Sequence

import torch

from ropescope.errors import NumericsError, PromptError, RopescopeError, UnsupportedModelError
from ropescope.hooks import capture
from ropescope.hooks.position import position_edges
from ropescope.hooks.reducers import fan_out, whole_prompts
from ropescope.model.anatomy import FINGERPRINT_KIND, ModelAnatomy, inspect_model
from ropescope.model.geometry import RopeGeometry
from ropescope.model.loading import tokenizer_of
from ropescope.options import ON_NONFINITE
from ropescope.profiling.distributed import gather_max, gather_merge, rank_and_world
from ropescope.profiling.result import Profile, prompt_hash, prompt_set_hash
from ropescope.progress import reporting
from ropescope.prompts import check_texts
from ropescope.version import __version__


def check_profile_options(
    *,
    max_tokens: int | None = None,
    batch_size: int = 8,
    on_nonfinite: str = "stop",
    chunk_tokens: int | None = None,
) -> None:
    """Refuse impossible options before any work (the command line calls this before loading)."""
    if max_tokens is not None and max_tokens <= 0:
        raise PromptError(f"max_tokens must be a positive number of tokens, got {max_tokens}")
    if batch_size <= 0:
        raise RopescopeError(f"batch size must be positive, got {batch_size}")
    if on_nonfinite not in ON_NONFINITE:
        raise RopescopeError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    if chunk_tokens is not None and chunk_tokens <= 0:
        raise RopescopeError(f"chunk_tokens must be a positive number of tokens, got {chunk_tokens}")


def tokenize_prompts(tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """Token ids of every prompt, each cut to ``max_tokens``; also how many were cut. A long prompt
    is tokenised by bounded prefixes (:func:`first_tokens`), never whole: memory follows
    ``max_tokens``, not the prompt's length."""
    check_profile_options(max_tokens=max_tokens)
    ids, cut = [], 0
    for number, text in enumerate(texts):
        tokens, longer = first_tokens(tokenizer, text, max_tokens)
        if not len(tokens):
            raise PromptError(f"prompt {number} ({text[:30]!r}) gives no tokens with this tokenizer")
        cut += longer
        ids.append(tokens)
    return ids, cut


# characters per token of a first prefix (grown by doubling while needed), and the tokens a prefix
# must hold beyond the cut so that the text after it cannot change the tokens kept
PREFIX_CHARS_PER_TOKEN, PREFIX_MARGIN_TOKENS = 8, 16


def first_tokens(tokenizer, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """The first ``max_tokens`` token ids of ``text`` as tokenising all of it gives them, and whether
    it has more, from prefixes: a prefix of ``PREFIX_CHARS_PER_TOKEN`` characters per token, doubled
    until it yields ``PREFIX_MARGIN_TOKENS`` tokens beyond the cut and the prefix twice as long agrees
    on every kept token (text that far after the cut changes none of them). A 20 MB one-line prompt
    cut to 16 tokens costs a few kilobytes, not gigabytes of tokenizer state."""
    size = (max_tokens + PREFIX_MARGIN_TOKENS) * PREFIX_CHARS_PER_TOKEN
    while 2 * size < len(text):
        short = tokenizer(text[:size], add_special_tokens=True)["input_ids"]
        if len(short) > max_tokens + PREFIX_MARGIN_TOKENS:
            longer = tokenizer(text[: 2 * size], add_special_tokens=True)["input_ids"]
            if list(longer[:max_tokens]) == list(short[:max_tokens]):
                return list(short[:max_tokens]), True
        size *= 2
    tokens = tokenizer(text, add_special_tokens=True)["input_ids"]
    return list(tokens[:max_tokens]), len(tokens) > max_tokens


def profile(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_tokens: int | None = None,
    batch_size: int = 8,
    include_bos: bool = False,
    geometry: RopeGeometry | None = None,
    model_id: str | None = None,
    prompt_set: str = "custom",
    progress: Callable[[int], None] | bool | None = None,
    reducers: Sequence[Callable] = (),
    tensors: tuple[str, ...] = ("q", "k", "v"),
    checkpoint: Callable | None = None,
    checkpoint_every: int = 10,
    resume: dict | None = None,
    on_nonfinite: str = "stop",
    chunk_tokens: int | None = None,
    by_position: bool = False,
) -> Profile:
    """Profile the chunk norms of q, k and v of every layer, head and chunk over ``texts``.

    ``max_tokens`` cuts longer prompts (with a warning; default: the model's context length) and
    must not exceed the model's context. BOS tokens are left out unless ``include_bos``: BOS is
    the same token at position 0 of every prompt, an attention sink with atypically large
    activations, and counting it would weight one outlier by the number of prompts.
    ``progress(n)`` is called after each batch with the number of prompts done (``progress=True``
    draws a bar: a notebook widget in Jupyter, :mod:`ropescope.progress` otherwise).
    ``reducers`` see every layer's post-RoPE q and k in the same forward passes (head scores, your
    own: :mod:`ropescope.hooks.reducers`); one that needs whole prompts makes every batch one prompt.
    ``checkpoint(batches_done, stats, max_seq_len)`` is called every ``checkpoint_every`` batches;
    ``resume`` (``{"batches_done", "stats", "max_seq_len"}``, see :mod:`ropescope.profiling.resume`) continues
    from such a state. Batches are formed deterministically, so a resumed run gives exactly the
    uninterrupted result. Tokens whose chunk norms are not finite (half-precision overflow) are
    never averaged: ``on_nonfinite="stop"`` raises :class:`NumericsError` naming tensor and layer;
    ``"skip"`` leaves them out with a warning and records the counts in the metadata.

    ``model`` is a :class:`~ropescope.model.LoadedModel`, a Hugging Face causal LM or a
    TransformerLens ``TransformerBridge`` (:mod:`ropescope.hooks.bridge`); with a loaded model,
    ``tokenizer=None`` means its own. ``chunk_tokens`` bounds activation memory on long prompts by running
    them in pieces through the model's KV cache (:func:`run_forward`); the profile equals the
    one-pass profile up to float summation order. ``by_position`` also keeps the statistics per
    log-spaced token-position bucket (:mod:`ropescope.hooks.position`; ``Profile.by_position``),
    in the same pass.
    """
    texts = check_texts(texts)
    check_profile_options(
        max_tokens=max_tokens, batch_size=batch_size, on_nonfinite=on_nonfinite, chunk_tokens=chunk_tokens
    )
    anatomy = inspect_model(model, geometry)
    tokenizer = tokenizer_of(model, tokenizer)
    reducers = list(reducers)
    if whole_prompts(reducers):
        batch_size = 1
    on_qk = fan_out(anatomy, reducers)
    if chunk_tokens is not None and (on_qk is not None or anatomy.bridge):
        raise RopescopeError("chunk_tokens works with chunk-norm profiling of a Hugging Face model only")
    if by_position and (anatomy.bridge or resume is not None or checkpoint is not None or rank_and_world()[1] > 1):
        raise RopescopeError(
            "by_position works on one process with a Hugging Face model, without checkpoints or resuming"
        )
    geometry = anatomy.geometry
    context = anatomy.context_length
    edges = position_edges(context) if by_position else None
    if max_tokens is None:
        max_tokens = context or 8192
    if context and max_tokens > context:
        raise PromptError(f"max_tokens {max_tokens} exceeds the model's context of {context} tokens")
    ids, cut = tokenize_prompts(tokenizer, texts, max_tokens)
    anatomy.check_fixed_frequencies(max((len(row) for row in ids), default=0), "a prompt")
    if cut:
        message = f"{cut} of {len(texts)} prompts were longer than {max_tokens} tokens and were cut"
        warnings.warn(message, stacklevel=2)
    bos = anatomy.bos_token_id
    countable = [sum(1 for t in row if include_bos or t != bos) for row in ids]
    if sum(countable) == 0:
        raise PromptError("no prompt has a token left to count after tokenisation")

    device = anatomy.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rank, world = rank_and_world()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))[rank::world]  # this process's shard
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    first = 0
    with (
        reporting(progress, f"profiling {len(order)} prompts", len(order)) as report,
        torch.inference_mode(),
        capture(anatomy, include_bos=include_bos, on_qk=on_qk, tensors=tensors, by_position=edges) as cap,
    ):
        if resume is not None:
            first = int(resume["batches_done"])
            cap.stats.update({name: s for name, s in resume["stats"].items()})
            cap.max_seq_len = int(resume["max_seq_len"])
        for number in range(first, len(batches)):
            input_ids, mask = pad_batch([ids[i] for i in batches[number]], pad)
            run_forward(anatomy, input_ids.to(device), mask.to(device), chunk_tokens)
            if report:
                report(sum(len(b) for b in batches[: number + 1]))
            if checkpoint is not None and (number + 1) % checkpoint_every == 0 and number + 1 < len(batches):
                checkpoint(number + 1, cap.stats, cap.max_seq_len)
    stats = {name: gather_merge(s.to_cpu()) for name, s in cap.stats.items()}
    for name in [t for t in ("q", "k") if t in tensors]:
        counts = stats[name].count.tolist()
        own = [i for i in anatomy.geometry.attention_layers if name == "q" or anatomy.geometry.makes_keys(i)]
        unseen = [layer for layer in own if counts[layer] == 0]
        if unseen and not stats[name].nonfinite[unseen].any():
            raise UnsupportedModelError(
                f"model type {anatomy.model_type!r} did not call apply_rotary_pos_emb in layer(s) "
                f"{', '.join(map(str, unseen[:8]))}, so ropescope saw no {name} there"
            )
    bad = _nonfinite_report(stats)
    if bad and on_nonfinite == "stop":
        raise NumericsError(
            "non-finite activations (NaN/inf, e.g. half-precision overflow) in "
            + bad
            + "; try --dtype float32, or --on-nonfinite skip to leave those tokens out"
        )
    if bad:
        warnings.warn(f"left out tokens with non-finite activations: {bad}", stacklevel=2)

    hashes = [prompt_hash(t) for t in texts]
    cfg = anatomy.config
    meta = {
        "model_id": model_id or str(getattr(anatomy.hf, "name_or_path", "") or cfg.model_type),
        "model_type": cfg.model_type,
        "model_fingerprint": _fingerprint(cfg, geometry),
        "weights_fingerprint": anatomy.weights_fingerprint,
        "weights_fingerprint_kind": FINGERPRINT_KIND,
        "tensors": [t for t in ("q", "k", "v") if t in tensors],
        "config": _json_safe(cfg.to_dict()),
        "geometry": geometry.to_dict(),
        "n_layers": geometry.n_layers,
        "n_heads": anatomy.n_heads,
        "n_kv_heads": int(stats["k"].mean.shape[1]),
        "n_chunks": geometry.n_chunks,
        "context_length": context,
        "n_tokens": int(stats["q"].count[0]),
        "n_prompts": len(texts),
        "max_seq_len": gather_max(cap.max_seq_len),
        "max_tokens": max_tokens,
        "prompts_cut": cut,
        "include_bos": include_bos,
        "nonfinite_tokens": {name: [int(c) for c in s.nonfinite.tolist()] for name, s in stats.items()},
        "dtype": str(anatomy.dtype).replace("torch.", ""),
        "prompt_set": prompt_set,
        "prompt_hashes": hashes,
        "prompt_set_hash": prompt_set_hash(hashes),
        "versions": _versions(),
    }
    if edges is None:
        return Profile(meta, stats)
    meta["position_edges"] = list(edges)
    return Profile(meta, stats, {name: s.to_cpu() for name, s in cap.by_position.items()})


def pad_batch(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and the 0/1 ``attention_mask`` of a batch of token rows."""
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return input_ids, mask


def run_forward(
    anatomy: ModelAnatomy, input_ids: torch.Tensor, mask: torch.Tensor, chunk_tokens: int | None = None
) -> None:
    """One forward pass of the base model (no language-model head) over a right-padded batch.

    With ``chunk_tokens`` the batch goes through in pieces of that many tokens, each attending to the
    previous pieces through the model's own KV cache, so activation memory is bounded by the piece
    (the cache still grows with the context). Positions continue across pieces, so every layer sees
    the same queries, keys and values as in one pass, up to float summation order. A
    TransformerBridge runs whole (its forward also computes the logits).
    """
    width = input_ids.shape[1]
    positions = torch.arange(width, device=input_ids.device)[None, :].expand(input_ids.shape[0], width)
    if anatomy.bridge:
        anatomy.runnable(input_ids, attention_mask=mask, position_ids=positions, return_type=None)
        return
    base = anatomy.base
    step = chunk_tokens or width
    cache = None
    for start in range(0, width, step):
        end = min(start + step, width)
        last = end == width
        out = base(
            input_ids=input_ids[:, start:end],
            attention_mask=mask[:, :end],
            position_ids=positions[:, start:end],
            past_key_values=cache,
            use_cache=not last,
        )
        cache = None if last else out.past_key_values
        del out


def _nonfinite_report(stats) -> str:
    """'' when every counted token was finite, else which tensor and layer lost how many tokens."""
    bad = []
    for name, s in stats.items():
        for layer, count in enumerate(s.nonfinite.tolist()):
            if count:
                bad.append(f"{name} layer {layer}: {int(count)} tokens")
    return "; ".join(bad[:4]) + ("; ..." if len(bad) > 4 else "")


def _fingerprint(cfg, geometry: RopeGeometry) -> str:
    blob = json.dumps({"config": _json_safe(cfg.to_dict()), "geometry": geometry.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _versions() -> dict:
    import transformers

    return {
        "ropescope": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }

"""T2 from scratch: small Gemma-style decoders with each positional encoding, same data and budget.

Corpus: the docstrings of the running Python's standard library (PSF license, on every machine
with Python; no download), in sorted file order, as UTF-8 bytes. The last 10% is the validation
split. Tokens are bytes (vocabulary 256), so perplexity is per byte.

Model: ``transformers.GemmaConfig`` (RMSNorm, GeGLU, multi-query attention as in Gemma 2B) at a
size set by :class:`TrainConfig`. The encoding is set in the model's own ``inv_freq`` buffer with
:func:`ropescope.prope.p_rope_frequencies` (NoPE: all zero), so training and evaluation run the
plain model code.

Same data order: the batch of step ``t`` for seed ``s`` depends only on ``(s, t)``, so every
encoding sees the same batches and a resumed run continues exactly where it stopped.
Checkpoints (safetensors for weights and optimizer state, JSON for the step) go to
``out/checkpoints`` every ``checkpoint_every`` steps; finished runs are rows of ``out/runs.csv``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ropescope.errors import RopescopeError, RunFileError
from ropescope.files import atomic_path, write_json
from ropescope.prompts import stdlib_docstrings
from ropescope.prope.frequencies import p_rope_frequencies
from ropescope.records import Field, check_table, read_csv

# name -> (theta, p, variant); the rows of the paper's Table 2
ENCODINGS = {
    "NoPE": (10_000.0, 0.0, "p"),
    "RoPE theta=10k": (10_000.0, 1.0, "p"),
    "RoPE theta=500k": (500_000.0, 1.0, "p"),
    "0.75-RoPE_reversed": (10_000.0, 0.75, "reversed"),
    "0.75-RoPE_partial": (10_000.0, 0.75, "partial"),
    "0.25-RoPE": (10_000.0, 0.25, "p"),
    "0.75-RoPE": (10_000.0, 0.75, "p"),
}
PAPER_WIKI = {
    "NoPE": 4.8594,
    "RoPE theta=10k": 4.4627,
    "RoPE theta=500k": 4.4485,
    "0.75-RoPE_reversed": 4.4592,
    "0.75-RoPE_partial": 4.4537,
    "0.25-RoPE": 4.5302,
    "0.75-RoPE": 4.4414,
}


@dataclass(frozen=True)
class TrainConfig:
    """Model size and training budget (the defaults train one model in about a minute on 2 cores)."""

    layers: int = 4
    hidden: int = 128
    heads: int = 4
    head_dim: int = 32
    intermediate: int = 384
    seq_len: int = 128
    batch: int = 16
    steps: int = 300
    lr: float = 3e-3
    warmup: int = 30
    eval_windows: int = 64
    checkpoint_every: int = 100

    @classmethod
    def small(cls, *, layers: int, hidden: int, seq_len: int, batch: int, steps: int, heads: int = 4) -> TrainConfig:
        """The command line's shape: width ``hidden`` over ``heads`` heads, an MLP three times as wide,
        warm-up a tenth of the steps, a checkpoint every ``min(100, steps)`` steps."""
        return cls(
            layers=layers,
            hidden=hidden,
            heads=heads,
            head_dim=hidden // heads,
            intermediate=3 * hidden,
            seq_len=seq_len,
            batch=batch,
            steps=steps,
            warmup=max(1, steps // 10),
            checkpoint_every=max(1, min(100, steps)),
        )


def check_train_options(config: TrainConfig, encodings) -> None:
    """Refuse unknown encodings and a width that RoPE cannot split, before any work."""
    for name in encodings:
        if name not in ENCODINGS:
            raise RopescopeError(f"unknown encoding {name!r}; expected all or some of: {', '.join(ENCODINGS)}")
    if config.hidden % (2 * config.heads):  # RoPE needs an even head dimension
        raise RopescopeError(
            f"the model width (--hidden) must be a multiple of {2 * config.heads} "
            f"({config.heads} heads, even head dim), got {config.hidden}"
        )


# which command-line option sets each TrainConfig field (TrainConfig.small)
_OPTION_OF = {
    "layers": "--layers",
    "hidden": "--hidden",
    "head_dim": "--hidden",
    "intermediate": "--hidden",
    "seq_len": "--seq-len",
    "batch": "--batch",
    "steps": "--steps",
    "warmup": "--steps",
    "checkpoint_every": "--steps",
}


RUNS_TABLE = {  # runs.csv: one finished model per row
    "encoding": Field("text", choices=tuple(ENCODINGS)),
    "seed": Field("int", low=0),
    "steps": Field("int", low=1),
    "train_loss": Field("number", nan=True),
    "val_perplexity": Field("number", nan=True),
}


def check_resume_options(out: Path, config: TrainConfig) -> None:
    """Refuse to resume the run in ``out`` with a model or training budget other than its own
    (``out/config.json``): finished and resumed models would be of different sizes in one table."""
    path = out / "config.json"
    if not path.is_file():
        return  # nothing was trained yet: any options start the run
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise RunFileError(f"{path} is not readable JSON; start over with --overwrite") from None
    if not isinstance(saved, dict):
        raise RunFileError(f"{path} holds a JSON {type(saved).__name__}, not an object")
    mine = asdict(config)
    for field, value in mine.items():
        if saved.get(field) != value:
            option = _OPTION_OF.get(field)
            said = option[2:].replace("-", "_") if option else field
            what = f"{option or field} {saved.get(said)!r:.40}, this command gives {mine[said]}"
            raise RunFileError(
                f"--resume: {out} was trained with {what}; "
                "resume with the run's own options or start over with --overwrite"
            )


def load_corpus(limit_bytes: int | None = None) -> tuple[bytes, str]:
    """The standard-library docstring corpus (:func:`ropescope.prompts.stdlib_docstrings`) as bytes,
    and its sha256 (first 16 hex digits)."""
    data = stdlib_docstrings().encode("utf-8")[:limit_bytes]
    return data, hashlib.sha256(data).hexdigest()[:16]


def build_model(encoding: str, config: TrainConfig, seed: int) -> torch.nn.Module:
    """A fresh Gemma-style decoder with ``encoding``'s frequencies in its ``inv_freq`` buffer."""
    import transformers

    theta, p, variant = ENCODINGS[encoding]
    cfg = transformers.GemmaConfig(
        vocab_size=256,
        hidden_size=config.hidden,
        intermediate_size=config.intermediate,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=1,
        head_dim=config.head_dim,
        max_position_embeddings=config.seq_len,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = transformers.GemmaForCausalLM(cfg)
    set_encoding(model, encoding)
    return model


def set_encoding(model, encoding: str) -> None:
    """Write ``encoding``'s chunk frequencies into the model's (non-persistent) ``inv_freq``."""
    _, p, variant = ENCODINGS[encoding]
    rotary = model.model.rotary_emb
    freqs = p_rope_frequencies(rotary.original_inv_freq.double().numpy(), p, variant)
    rotary.inv_freq.copy_(torch.as_tensor(freqs, dtype=rotary.inv_freq.dtype))


def batch_at(data: np.ndarray, seed: int, step: int, config: TrainConfig) -> torch.Tensor:
    """The training batch of ``step`` for ``seed``: the same for every encoding."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(data) - config.seq_len - 1, size=config.batch)
    return torch.as_tensor(np.stack([data[s : s + config.seq_len] for s in starts]), dtype=torch.long)


def evaluate(model, data: np.ndarray, config: TrainConfig) -> float:
    """Validation perplexity per byte on ``eval_windows`` evenly spaced windows of the split."""
    starts = np.linspace(0, len(data) - config.seq_len - 1, config.eval_windows).astype(int)
    ids = torch.as_tensor(np.stack([data[s : s + config.seq_len] for s in starts]), dtype=torch.long)
    model.eval()
    with torch.inference_mode():
        total = 0.0
        for chunk in ids.split(16):
            total += float(model(input_ids=chunk, labels=chunk).loss) * len(chunk)
    model.train()
    return math.exp(total / len(ids))


def _lr(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train_one(
    encoding: str,
    seed: int,
    train: np.ndarray,
    valid: np.ndarray,
    config: TrainConfig,
    ckpt_dir: Path,
    log: Callable[[str], None] | None = None,
    snapshot: Callable[[torch.nn.Module, int], None] | None = None,
    snapshot_every: int = 0,
) -> dict:
    """Train (or resume) one model; return its row: encoding, seed, steps, final loss, val perplexity.

    ``snapshot(model, step)`` (with ``snapshot_every`` > 0) is called on the untrained model (step
    0), after every ``snapshot_every``-th step and after the last one; a resumed run calls it only
    for the steps it trains itself, so the snapshots of the steps before the checkpoint stay those
    recorded when they happened (training is deterministic, so they are the same either way).
    """
    model = build_model(encoding, config, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01, betas=(0.9, 0.95))
    stem = checkpoint_stem(ckpt_dir, encoding, seed)
    start = _load_checkpoint(model, optimizer, stem)
    set_encoding(model, encoding)
    model.train()
    loss = float("nan")
    if snapshot is not None and snapshot_every and start == 0:
        snapshot(model, 0)
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        ids = batch_at(train, seed, step, config)
        loss_t = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss = float(loss_t.detach())
        if snapshot is not None and snapshot_every and ((step + 1) % snapshot_every == 0 or step + 1 == config.steps):
            snapshot(model, step + 1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            _save_checkpoint(model, optimizer, stem, step + 1)
            if log:
                log(f"{encoding} seed {seed}: step {step + 1}/{config.steps}, train loss {loss:.3f}")
    return {
        "encoding": encoding,
        "seed": seed,
        "steps": config.steps,
        "train_loss": loss,
        "val_perplexity": evaluate(model, valid, config),
    }


def checkpoint_stem(ckpt_dir: Path, encoding: str, seed: int) -> Path:
    """Where the checkpoint of (encoding, seed) lives (without the .safetensors suffix)."""
    return ckpt_dir / f"{encoding.replace(' ', '_').replace('=', '').replace('.', 'p')}-seed{seed}"


def _save_checkpoint(model, optimizer, stem: Path, step: int) -> None:
    tensors, seen = {}, set()
    for key, value in model.state_dict().items():
        if value.data_ptr() in seen:  # tied weights (lm_head = embeddings) are stored once
            continue
        seen.add(value.data_ptr())
        tensors[f"model.{key}"] = value.detach().contiguous()
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"opt.{i}.{name}"] = value.detach().reshape(-1) if value.dim() == 0 else value.detach()
    # the step lives in the same file as the weights, so the two can never disagree after a crash
    with atomic_path(f"{stem}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})


def load_checkpoint_weights(model, stem: Path) -> int:
    """Load only the model weights of a checkpoint into ``model``; return its step."""
    return _load_checkpoint(model, None, stem)


def _load_checkpoint(model, optimizer, stem: Path) -> int:
    weights = Path(f"{stem}.safetensors")
    if not weights.is_file():
        return 0
    tensors = load_file(str(weights))
    with safe_open(str(weights), framework="pt") as handle:
        step = (handle.metadata() or {}).get("step")
    if step is None:  # written before the step moved into the weights file
        legacy = Path(f"{stem}.json")
        if not legacy.is_file():
            return 0
        step = json.loads(legacy.read_text())["step"]
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    if optimizer is None:
        return int(step)
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    optimizer.load_state_dict(state)
    return int(step)


def run_t2(
    out: Path,
    config: TrainConfig,
    seeds: int = 3,
    encodings=tuple(ENCODINGS),
    limit_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
    snapshots: Callable | None = None,
    snapshot_every: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every (encoding, seed) not yet in ``out/runs.csv``; return per-run rows and the summary.

    ``snapshots(encoding, seed, valid)`` returns the ``snapshot(model, step)`` callback of one run
    (see :func:`train_one`); ``valid`` is the held-out byte array."""
    corpus, digest = load_corpus(limit_bytes)
    data = np.frombuffer(corpus, dtype=np.uint8)
    split = int(len(data) * 0.9)
    train, valid = data[:split], data[split:]
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    write_json(
        out / "config.json", {**asdict(config), "seeds": seeds, "corpus_sha256": digest, "corpus_bytes": len(data)}
    )
    runs_path = out / "runs.csv"
    runs = check_table(read_csv(runs_path), RUNS_TABLE, runs_path) if runs_path.is_file() else pd.DataFrame()
    for seed in range(seeds):
        for encoding in encodings:
            if len(runs) and ((runs.encoding == encoding) & (runs.seed == seed)).any():
                continue
            snapshot = snapshots(encoding, seed, valid) if snapshots is not None else None
            row = train_one(encoding, seed, train, valid, config, out / "checkpoints", log, snapshot, snapshot_every)
            runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
            with atomic_path(runs_path) as tmp:
                runs.to_csv(tmp, index=False)
    return runs, summarize(runs)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1) of validation perplexity per encoding, best first."""
    summary = runs.groupby("encoding")["val_perplexity"].agg(["mean", "std", "count"]).reset_index()
    summary["paper_wiki"] = summary.encoding.map(PAPER_WIKI)
    summary["rank"] = summary["mean"].rank().astype(int)
    return summary.sort_values("mean").reset_index(drop=True)

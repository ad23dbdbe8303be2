"""Benchmark: ``ropescope prope``'s table and ``train-prope``'s training against the bare forward
(and backward) passes they need, each measured in the same process.

- prope: :func:`ropescope.prope.perplexity.prope_table` with the README's arguments (p = 0.25, 0.5,
  0.75, 1; all three variants; the built-in held-out text in windows of 512 tokens; batches of 4)
  on the real Gemma 3 270M, float32. Baseline: for every condition the table evaluates (unmodified
  RoPE plus 3 variants x 3 fractions), the plain causal LM over the same batches —
  ``model(input_ids, attention_mask).logits`` and PyTorch's cross-entropy — with no hooks.
- train-prope: :func:`ropescope.prope.train.train_one` for one encoding and seed (``TrainConfig``
  as the command's defaults, fewer steps) against the same number of bare steps: forward, loss,
  backward and AdamW step on the same model and batches, without checkpoints or evaluation.

Target (issue 16): both <= 1.5x.
Run: ``.venv/bin/python bench/prope_vs_forward.py [--reps 3] [--steps 60]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from targets import record

import ropescope
from ropescope.profiling.run import pad_batch
from ropescope.prompts import load_text
from ropescope.prope.frequencies import VARIANTS
from ropescope.prope.perplexity import prope_table, token_windows
from ropescope.prope.train import TrainConfig, batch_at, build_model, load_corpus, train_one

PS = (0.25, 0.5, 0.75, 1.0)


def bare_evaluation(model, windows: list[list[int]], batch_size: int) -> float:
    """Mean NLL of the windows with the plain causal LM (no ropescope code)."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            ids, mask = pad_batch(windows[start : start + batch_size], 0)
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
            keep = mask[:, 1:].bool()
            nll = torch.nn.functional.cross_entropy(logits[keep], ids[:, 1:][keep], reduction="sum")
            total, count = total + float(nll), count + int(keep.sum())
    return total / count


def base_forwards(model, windows: list[list[int]], batch_size: int) -> None:
    """The base model alone over the same batches: a floor no perplexity can beat (it skips the LM head)."""
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            ids, mask = pad_batch(windows[start : start + batch_size], 0)
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)


def prope_ratio(reps: int) -> float:
    lm = ropescope.load_model("gemma-3-270m")
    text = load_text("heldout")
    windows = token_windows(lm.tokenizer, text, 512, lm.model)
    conditions = 1 + len(VARIANTS) * sum(p != 1.0 for p in PS)
    bare, floor, table = [], [], []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(conditions):
            bare_evaluation(lm.model, windows, 4)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(conditions):
            base_forwards(lm.model, windows, 4)
        floor.append(time.perf_counter() - start)
        start = time.perf_counter()
        prope_table(lm.model, lm.tokenizer, text, PS, context=512, batch_size=4)
        table.append(time.perf_counter() - start)
    b, f, t = statistics.median(bare), statistics.median(floor), statistics.median(table)
    print(
        f"prope: {conditions} conditions, {len(windows)} windows of <= 512 tokens; plain causal LM {b:.1f} s, "
        f"base model alone (no LM head: a floor) {f:.1f} s, table {t:.1f} s; table / floor {t / f:.2f}"
    )
    return t / b


def train_ratio(steps: int, reps: int) -> float:
    config = TrainConfig(steps=steps, checkpoint_every=max(1, steps // 3))
    data = np.frombuffer(load_corpus()[0], dtype=np.uint8)
    split = int(len(data) * 0.9)
    train_arr, valid_arr = data[:split], data[split:]
    bare, full = [], []
    for _ in range(reps):
        model = build_model("RoPE theta=10k", config, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
        start = time.perf_counter()
        for step in range(steps):
            batch = batch_at(train_arr, 0, step, config)
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        bare.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train_one("RoPE theta=10k", 0, train_arr, valid_arr, config, Path(tmp), None)
            full.append(time.perf_counter() - start)
    b, f = statistics.median(bare), statistics.median(full)
    print(f"train-prope: {steps} steps; bare {b:.1f} s, train_one (checkpoints, evaluation included) {f:.1f} s")
    return f / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    ratios = {"prope / bare forwards with LM head (README arguments)": prope_ratio(args.reps)}
    print(f"  ratio {ratios['prope / bare forwards with LM head (README arguments)']:.3f} (target <= 1.5)")
    name = f"train-prope / bare training steps ({args.steps} steps, checkpoints and evaluation included)"
    ratios[name] = train_ratio(args.steps, args.reps)
    print(f"  ratio {ratios[name]:.3f} (target <= 1.5)")
    record("prope_vs_forward", ratios)


if __name__ == "__main__":
    main()

"""Benchmark: a whole ``ropescope.profile(model, tokenizer, [prompt])`` call vs the base-model
forward it needs, on the same tokens, in one process.

Unlike ``profile_vs_forward.py`` (the capture's steady state), this times everything a user's call
costs: option checks, tokenisation, the geometry self-check of the first batch, the hooks, the
statistics, gathering them and building the :class:`~ropescope.profiling.result.Profile`. The
baseline is :func:`~ropescope.profiling.run.run_forward` without hooks: the same base-model call
(``attention_mask``, ``position_ids``, no cache) that ``profile()`` makes. The two
cases alternate (``--reps`` pairs after one warm-up pair) so drift hits both alike; the ratio is of
medians (``ratio``); on a shared machine, whose noise only ever adds time, the ratio of the fastest
run of each (``fastest``) is printed beside it. Real Gemma 3 270M, float32, one prompt of N tokens
(Shakespeare passages repeated).

Target (issue 16): <= 1.02x at 512, 2,048 and 8,192 tokens.
Run: ``.venv/bin/python bench/whole_profile.py [--tokens 512 2048 8192] [--reps 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from targets import record

import ropescope
from ropescope.model.anatomy import inspect_model
from ropescope.profiling.run import run_forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--reps", type=int, default=5, help="timed pairs per length (8,192 tokens: at most 3)")
    args = parser.parse_args()
    lm = ropescope.load_model("gemma-3-270m")
    tok, anatomy = lm.tokenizer, inspect_model(lm)
    words = " ".join(ropescope.load_prompts("shakespeare")).split()
    ratios = {}
    print(f"{'tokens':>7} {'forward s':>10} {'profile() s':>12} {'ratio':>7} {'fastest':>8}  (spread of pair ratios)")
    for n in args.tokens:
        text, ids = _text_of(tok, words, n)
        forward_times, profile_times = [], []

        def forward(ids=ids, mask=torch.ones_like(ids)):
            with torch.inference_mode():  # the very call profile() makes: mask, positions, no cache
                run_forward(anatomy, ids, mask)

        def whole(text=text, limit=n + 8):
            ropescope.profile(lm, None, [text], max_tokens=limit)

        forward(), whole()  # warm-up pair
        for _ in range(min(args.reps, 3) if n >= 8192 else args.reps):
            for fn, times in ((forward, forward_times), (whole, profile_times)):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        pairs = sorted(p / f for p, f in zip(profile_times, forward_times, strict=True))
        f, p = statistics.median(forward_times), statistics.median(profile_times)
        fastest = min(profile_times) / min(forward_times)  # noise only adds time: the floor of each
        ratios[f"whole profile() / forward, {n:,} tokens"] = p / f
        ratios[f"fastest runs: whole profile() / forward, {n:,} tokens"] = fastest  # context, not the target
        spread = f"({pairs[0]:.3f}-{pairs[-1]:.3f})"
        print(f"{n:>7} {f:>10.2f} {p:>12.2f} {p / f:>7.3f} {fastest:>8.3f}  {spread}", flush=True)
    record("whole_profile", ratios)


def _text_of(tok, words: list[str], n: int) -> tuple[str, torch.Tensor]:
    """A text whose tokenisation (with BOS) is exactly ``n`` tokens, and those token ids."""
    text = " ".join(words)
    while len(tok(text)["input_ids"]) < n:
        text = text + " " + text
    ids = tok(text)["input_ids"][:n]
    text = tok.decode(ids[1:])
    ids = tok(text)["input_ids"]
    return text, torch.tensor([ids])


if __name__ == "__main__":
    main()

"""Benchmark: peak memory of a profiling run does not grow with the number of prompts.

Real Gemma 3 270M, float32, batch 8; each prompt joins 12 of the 60 built-in prompts of all five
domains (a different run of them per prompt) and is cut to 256 tokens, so every case has batches of
the same shape (8 x 256) and differs only in how many there are. Each case in a fresh process;
peak resident memory is the whole process's (model and tokenizer included). Ratios are against the
smallest prompt count. Each process first profiles ``--warmup-batches`` batches of other prompts:
in one process resident memory grows over the first few batches (1.14 GB after one, 1.27 GB after
four, 1.284 after eight, 1.288 after sixteen: the C allocator's arenas and the kernels' workspaces
reaching their size) and not after, so without the warm-up the ratio measures that one-off growth.

Run: ``.venv/bin/python bench/memory_vs_prompts.py [--prompts 8 64 256] [--reps 2]``.
"""

from __future__ import annotations

import argparse
import json

from common import report, run_child
from targets import record

CHILD = r"""
import warnings
warnings.simplefilter("ignore")
pool = [p for s in ("shakespeare", "italian", "chinese", "python", "addition") for p in ropescope.load_prompts(s)]
n, warmup = (int(x) for x in extra.split(","))
# distinct prompts, each longer than 256 tokens, so every batch is 8 x 256 whatever n is
texts = [f"({i}) " + " ".join(pool[(i + j) % len(pool)] for j in range(12)) for i in range(n)]
if warmup:  # batches of other prompts first: the allocator and kernel workspaces reach their size
    others = [f"(warm-up {i}) " + " ".join(pool[(i + j) % len(pool)] for j in range(12)) for i in range(8 * warmup)]
    ropescope.profile(model, tok, others, max_tokens=256, batch_size=8)
start = time.perf_counter()
prof = ropescope.profile(model, tok, texts, max_tokens=256, batch_size=8)
result["seconds"] = time.perf_counter() - start
result["counted_tokens"] = prof.n_tokens
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--warmup-batches", type=int, default=4, help="batches profiled first in each process (0: none)"
    )
    args = parser.parse_args()
    rows = []
    for rep in range(args.reps):
        for n in args.prompts:
            result = run_child(CHILD, f"{n} prompts", 256, f"{n},{args.warmup_batches}")
            result["rep"] = rep
            rows.append(result)
            print(json.dumps(result), flush=True)
    cases = [f"{n} prompts" for n in args.prompts]
    frame = report(rows, "memory_vs_prompts", cases, cases[0])
    for case in cases:
        part = frame[frame.case == case]
        print(f"{case}: {int(part.counted_tokens.median())} counted tokens, peak {part.peak_rss_gb.median():.2f} GB")
    low, high = min(args.prompts), max(args.prompts)
    peak = {n: frame[frame.case == f"{n} prompts"].peak_rss_gb.median() for n in (low, high)}
    record("memory_vs_prompts", {f"peak memory, {high // low}x prompts / 1x ({low} -> {high})": peak[high] / peak[low]})


if __name__ == "__main__":
    main()

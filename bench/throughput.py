"""Benchmark: profiling throughput (counted tokens per second) of a prompt set with batching and
padding (batch 8) vs one prompt at a time (batch 1). Real Gemma 3 270M, the 60 built-in prompts of
all five domains, each case in a fresh process.

Run: ``.venv/bin/python bench/throughput.py [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json

from common import report, run_child

CHILD = r"""
texts = [p for s in ("shakespeare", "italian", "chinese", "python", "addition") for p in ropescope.load_prompts(s)]
ropescope.profile(model, tok, texts[:4], batch_size=int(extra))  # warm-up
start = time.perf_counter()
prof = ropescope.profile(model, tok, texts, batch_size=int(extra))
result["seconds"] = time.perf_counter() - start
result["tokens_per_second"] = prof.n_tokens / result["seconds"]
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for rep in range(args.reps):
        for batch in (1, 8):
            result = run_child(CHILD, f"batch{batch}", 0, str(batch))
            result["rep"] = rep
            rows.append(result)
            print(json.dumps(result), flush=True)
    frame = report(rows, "throughput", ["batch1", "batch8"], "batch1")
    for case in ("batch1", "batch8"):
        print(f"{case}: median {frame[frame.case == case].tokens_per_second.median():.0f} counted tokens/s")


if __name__ == "__main__":
    main()

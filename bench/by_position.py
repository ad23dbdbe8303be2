"""Benchmark: what ``--by-position`` costs. ``profile(by_position=True)`` against plain
``profile()`` on the same long documents in one process (alternating pairs after a warm-up pair;
ratio of medians), and the peak memory of each in a fresh child process (ru_maxrss).

Real Gemma 3 270M, float32, the built-in ``stdlib-long`` set cut to N tokens, KV-cache pieces of
1,024 tokens. Target: <= 1.05x time, <= 1.02x peak memory (the buckets are a few small arrays).
Run: ``.venv/bin/python bench/by_position.py [--tokens 2048] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from targets import record

import ropescope

CHILD = """
import json, resource, sys, ropescope
lm = ropescope.load_model("gemma-3-270m")
docs = ropescope.load_prompts("stdlib-long")[:2]
ropescope.profile(lm, None, docs, max_tokens=int(sys.argv[1]), chunk_tokens=1024, by_position=sys.argv[2] == "1")
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def _peak_kb(tokens: int, by_position: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tokens), "1" if by_position else "0"], capture_output=True, text=True
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    lm = ropescope.load_model("gemma-3-270m")
    docs = ropescope.load_prompts("stdlib-long")[:2]

    def run(by_position: bool) -> float:
        start = time.perf_counter()
        ropescope.profile(lm, None, docs, max_tokens=args.tokens, chunk_tokens=1024, by_position=by_position)
        return time.perf_counter() - start

    run(False), run(True)  # warm-up pair
    plain, split = [], []
    for _ in range(args.reps):
        plain.append(run(False))
        split.append(run(True))
    ratio = statistics.median(split) / statistics.median(plain)
    memory = _peak_kb(args.tokens, True) / _peak_kb(args.tokens, False)
    print(
        f"{args.tokens:,} tokens x 2 documents: plain {statistics.median(plain):.2f} s, by position "
        f"{statistics.median(split):.2f} s, time ratio {ratio:.3f}, peak memory ratio {memory:.3f}"
    )
    record(
        "by_position",
        {
            f"by-position profile / plain profile, {args.tokens:,} tokens": ratio,
            f"by-position peak memory / plain, {args.tokens:,} tokens": memory,
        },
    )


if __name__ == "__main__":
    main()

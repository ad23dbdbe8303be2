"""Benchmark: loading the bundled Gemma 3 270M the first time (GGUF assembly, dequantisation and
conversion to safetensors) vs from the converted cache. Each load in a fresh process; the first
uses an empty temporary cache directory.

Run: ``.venv/bin/python bench/load_time.py [--reps 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = (
    "import time, json; t = time.perf_counter(); import ropescope; "
    "ropescope.load_model('gemma-3-270m'); print('RESULT ' + json.dumps(time.perf_counter() - t))"
)


def timed(cache: str) -> float:
    env = {**os.environ, "ROPESCOPE_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=1800)
    return json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    first, cached = [], []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory() as cache:
            first.append(timed(cache))
            cached.append(timed(cache))
    f, c = statistics.median(first), statistics.median(cached)
    print(
        f"first load (convert) median {f:.1f} s (spread {max(first) - min(first):.1f}); "
        f"cached median {c:.1f} s (spread {max(cached) - min(cached):.1f}); ratio first/cached {f / c:.1f}x"
    )


if __name__ == "__main__":
    main()

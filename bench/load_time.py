"""Benchmark: loading the bundled Gemma 3 270M the first time (GGUF assembly, dequantisation and
conversion to safetensors) vs from the converted cache, against the floor of any such load: a fresh
Python importing torch, transformers and the Gemma 3 modeling code. Each load in a fresh process;
the first uses an empty temporary cache directory.

Target (issue 16): cached load in a fresh process <= 5 s.
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

from targets import record

CHILD = (
    "import time, json; t = time.perf_counter(); import ropescope; "
    "ropescope.load_model('gemma-3-270m'); print('RESULT ' + json.dumps(time.perf_counter() - t))"
)
FLOOR = (
    "import time, json; t = time.perf_counter(); import torch, transformers; "
    "import transformers.models.gemma3.modeling_gemma3; print('RESULT ' + json.dumps(time.perf_counter() - t))"
)


def timed(cache: str, code: str = CHILD) -> float:
    env = {**os.environ, "ROPESCOPE_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    return json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cached-only", action="store_true", help="time cached loads from the usual cache only")
    args = parser.parse_args()
    first, cached, floor = [], [], []
    for _ in range(args.reps):
        if args.cached_only:
            cache = os.environ.get("ROPESCOPE_CACHE", os.path.expanduser("~/.cache/ropescope"))
            first.append(float("nan"))
            cached.append(timed(cache))
            floor.append(timed(cache, FLOOR))
            continue
        with tempfile.TemporaryDirectory() as cache:
            first.append(timed(cache))
            cached.append(timed(cache))
            floor.append(timed(cache, FLOOR))
    f, c, z = statistics.median(first), statistics.median(cached), statistics.median(floor)
    print(
        f"first load (convert) median {f:.1f} s (spread {max(first) - min(first):.1f}); "
        f"cached median {c:.2f} s (spread {max(cached) - min(cached):.2f}); floor (import torch, transformers, "
        f"Gemma 3 modeling) {z:.2f} s; cached - floor {c - z:.2f} s (tokenizer ~1 s, weights, ropescope)"
    )
    record("load_time", {"cached load, fresh process (s)": c, "import floor: torch + transformers + modeling (s)": z})


if __name__ == "__main__":
    main()

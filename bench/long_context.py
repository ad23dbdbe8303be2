"""Benchmark: one long prompt profiled in one pass vs in pieces through the KV cache.

Real Gemma 3 270M, float32, one prompt of N tokens (Shakespeare passages repeated), each case in a
fresh process, median of ``--reps`` processes. Cases:

- ``forward``: the base model, no hooks, one pass: the baseline.
- ``profile``: ``ropescope.profile`` in one pass.
- ``profile_chunked``: ``ropescope.profile(..., chunk_tokens=C)``: pieces of C tokens, each attending
  to the earlier ones through the model's KV cache (``--chunk-tokens`` on the command line).

Run: ``.venv/bin/python bench/long_context.py [--tokens 8192 16384] [--chunk 1024] [--reps 2]``.
"""

from __future__ import annotations

import argparse

from common import report, run_interleaved

CHILD = r"""
import warnings
warnings.filterwarnings("ignore")
text = tok.decode(ids[0, 1:])
start = time.perf_counter()
with torch.inference_mode():
    if case == "forward":
        base(input_ids=ids, use_cache=False)
    else:
        chunk = int(extra) if case == "profile_chunked" else None
        prof = ropescope.profile(model, tok, [text], max_tokens=n_tokens, chunk_tokens=chunk)
        result["counted_tokens"] = prof.n_tokens
result["seconds"] = time.perf_counter() - start
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""

CASES = ["forward", "profile", "profile_chunked"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    rows = run_interleaved(CHILD, CASES, args.tokens, args.reps, str(args.chunk))
    report(rows, "long_context", CASES, "forward")


if __name__ == "__main__":
    main()

"""Benchmark: ropescope profiling vs a plain forward pass of the same model on the same tokens.

Real Gemma 3 270M, float32, one prompt of N tokens; each case in a fresh process (peak resident
memory is the process's). Within one process the case is repeated ``--inner`` times after a
warm-up, and the median is kept, so model loading and the one-off geometry self-check of the first
batch are not timed: this is the steady-state cost per forward of a profiling run. Cases:

- ``forward``: the base model (no LM head), no hooks: the baseline.
- ``profile``: the same forward inside ``ropescope.capture`` (q, k, v chunk statistics of every
  layer, head and chunk).

Target (issue 6): time <= 1.05x and extra memory independent of N.
Run: ``.venv/bin/python bench/profile_vs_forward.py [--tokens 512 2048 8192] [--reps 3]``.
"""

from __future__ import annotations

import argparse

from common import report, run_interleaved

CHILD = r"""
inner = int(extra)
capture = ropescope.capture(model)  # one capture for all repetitions: steady-state profiling cost
cap = capture.__enter__() if case == "profile" else None
def once():
    with torch.inference_mode():
        base(input_ids=ids, use_cache=False)
once()  # warm-up (and, when profiling, the one-off geometry self-check)
times = []
for _ in range(inner):
    start = time.perf_counter(); once(); times.append(time.perf_counter() - start)
times.sort()
result["seconds"] = times[len(times) // 2]
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--reps", type=int, default=3, help="fresh processes per case")
    parser.add_argument("--inner", type=int, default=3, help="timed repetitions inside each process")
    args = parser.parse_args()

    def inner(tokens: int) -> str:  # one timed forward at 8k: each takes about 40 s here
        return str(args.inner if tokens < 8192 else 1)

    rows = run_interleaved(CHILD, ["forward", "profile"], args.tokens, args.reps, inner)
    report(rows, "profile_vs_forward", ["forward", "profile"], "forward")


if __name__ == "__main__":
    main()

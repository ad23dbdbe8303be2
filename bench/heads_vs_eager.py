"""Benchmark: head offset scores by ropescope (block-wise) vs from eager attention weights.

Each case runs in a fresh subprocess on the real Gemma 3 270M (float32, CPU) with one prompt of
N tokens (Shakespeare passages repeated), and reports wall time and the process's peak resident
memory. Cases:

- ``forward``: a plain forward pass of the base model (sdpa attention): the baseline.
- ``ropescope``: the same forward with ropescope's head-score reducer (offsets 0..8, sink,
  per-chunk attribution) and q/k chunk statistics.
- ``eager``: a forward with ``attn_implementation="eager"`` and ``output_attentions=True``, then the
  same offset scores read from the returned S x S weights. Its address space is capped at
  ``--eager-limit-gb`` so that running out of memory is reported instead of freezing the machine.

Run: ``.venv/bin/python bench/heads_vs_eager.py [--tokens 2048 8192] [--reps 3]``.
Writes ``bench/results/heads_vs_eager.csv`` and prints medians and ratios against ``forward``.
"""

from __future__ import annotations

import argparse
import json

from common import report, run_child
from targets import record

CHILD = r"""
limit_gb = float(extra)
start = time.perf_counter()
try:
    with torch.inference_mode():
        if case == "forward":
            base(input_ids=ids, use_cache=False)
        elif case == "ropescope":
            from ropescope.heads.scan import scan_heads
            report = scan_heads(model, tok, [tok.decode(ids[0, 1:])], max_tokens=n_tokens)
            result["top_offset_1"] = float(report.table["offset_1"].max())
        elif case == "eager":
            resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30), int(limit_gb * 2**30)))
            model.set_attn_implementation("eager")
            atts = base(input_ids=ids, use_cache=False, output_attentions=True).attentions
            rows = torch.arange(2, n_tokens)
            result["top_offset_1"] = max(float(a[0][:, rows, rows - 1].mean(-1).max()) for a in atts)
    result["seconds"] = time.perf_counter() - start
except (MemoryError, RuntimeError) as exc:
    result["seconds"] = float("nan")
    result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
result["peak_rss_gb"] = peak_gb()
print("RESULT " + json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--eager-limit-gb", type=float, default=20.0)
    args = parser.parse_args()
    rows = []
    for tokens in args.tokens:
        for case in ("forward", "ropescope", "eager"):
            for rep in range(args.reps):
                result = run_child(CHILD, case, tokens, str(args.eager_limit_gb))
                result["rep"] = rep
                rows.append(result)
                print(json.dumps(result), flush=True)
                if "error" in result:
                    break
    frame = report(rows, "heads_vs_eager", ["forward", "ropescope", "eager"], "forward")
    ratios = {}
    for tokens in args.tokens:
        part = frame[frame.tokens == tokens]
        base, heads = part[part.case == "forward"], part[part.case == "ropescope"]
        ratios[f"heads time / forward, {tokens:,} tokens"] = heads.seconds.median() / base.seconds.median()
        ratios[f"heads memory / forward, {tokens:,} tokens"] = heads.peak_rss_gb.median() / base.peak_rss_gb.median()
    record("heads_vs_eager", ratios)


if __name__ == "__main__":
    main()

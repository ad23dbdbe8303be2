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
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time, torch
import ropescope
case, n_tokens, limit_gb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
model, tok = ropescope.load_model("gemma-3-270m")
text = " ".join(ropescope.load_prompts("shakespeare"))
ids = tok(text)["input_ids"]
while len(ids) < n_tokens:
    ids = ids + ids[1:]
ids = torch.tensor([ids[:n_tokens]])
base = model.model
result = {"case": case, "tokens": n_tokens}
start = time.perf_counter()
try:
    with torch.inference_mode():
        if case == "forward":
            base(input_ids=ids, use_cache=False)
        elif case == "ropescope":
            from ropescope.headscan import scan_heads
            texts = [tok.decode(ids[0, 1:])]
            report = scan_heads(model, tok, texts, max_tokens=n_tokens)
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
result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("RESULT " + json.dumps(result))
"""


def run_case(case: str, tokens: int, limit_gb: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(tokens), str(limit_gb)], capture_output=True, text=True, timeout=3600
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
    return {"case": case, "tokens": tokens, "seconds": float("nan"), "peak_rss_gb": float("nan"), "error": tail[:120]}


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
                result = run_case(case, tokens, args.eager_limit_gb)
                result["rep"] = rep
                rows.append(result)
                print(json.dumps(result), flush=True)
                if "error" in result:
                    break
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(out / "heads_vs_eager.csv", index=False)
    print(f"\n{'tokens':>7} {'case':>10} {'median s':>9} {'spread s':>9} {'peak GB':>8} {'time/fwd':>9} {'mem/fwd':>8}")
    for tokens in args.tokens:
        part = frame[frame.tokens == tokens]
        base = part[part.case == "forward"]
        t0, m0 = statistics.median(base.seconds), statistics.median(base.peak_rss_gb)
        for case in ("forward", "ropescope", "eager"):
            c = part[part.case == case]
            t, m = statistics.median(c.seconds), statistics.median(c.peak_rss_gb)
            spread = (c.seconds.max() - c.seconds.min()) if len(c) > 1 else 0.0
            note = f"  ({c.error.dropna().iloc[0]})" if "error" in c and c.error.notna().any() else ""
            print(f"{tokens:>7} {case:>10} {t:>9.2f} {spread:>9.2f} {m:>8.2f} {t / t0:>9.2f} {m / m0:>8.2f}{note}")


if __name__ == "__main__":
    main()

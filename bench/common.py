"""Shared by the benchmarks: run one case in a fresh Python process, collect its JSON result, and
print medians, spreads and ratios against a baseline case measured in the same run."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"

# Prepended to every child: load the bundled model and build a prompt of N tokens.
PRELUDE = r"""
import json, resource, sys, time, torch
import ropescope
case, n_tokens, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model, tok = ropescope.load_model("gemma-3-270m")
ids = tok(" ".join(ropescope.load_prompts("shakespeare")))["input_ids"]
while len(ids) < n_tokens:
    ids = ids + ids[1:]
ids = torch.tensor([ids[:n_tokens]])
base = model.model
result = {"case": case, "tokens": n_tokens}
def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
"""


def run_child(code: str, case: str, tokens: int, extra: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code, case, str(tokens), extra], capture_output=True, text=True, timeout=3600
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
    return {"case": case, "tokens": tokens, "seconds": float("nan"), "peak_rss_gb": float("nan"), "error": tail[:120]}


def run_interleaved(child: str, cases: list[str], token_counts: list[int], reps: int, extra) -> list[dict]:
    """Run every case ``reps`` times per token count, the cases interleaved within each repetition
    so that drift of the machine hits them alike. ``extra(tokens)`` (or a fixed string) is the
    child's third argument. Each result is printed as it arrives."""
    rows = []
    for tokens in token_counts:
        for rep in range(reps):
            for case in cases:
                result = run_child(child, case, tokens, extra(tokens) if callable(extra) else extra)
                result["rep"] = rep
                rows.append(result)
                print(json.dumps(result), flush=True)
    return rows


def report(rows: list[dict], name: str, cases: list[str], baseline: str) -> pd.DataFrame:
    """Write ``results/<name>.csv`` and print a table: median time, spread, peak memory, ratios."""
    RESULTS.mkdir(exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(RESULTS / f"{name}.csv", index=False)
    print(
        f"\n{'tokens':>7} {'case':>17} {'median s':>9} {'spread s':>9} {'peak GB':>8} {'time/base':>10} {'mem/base':>9}"
    )
    for tokens in sorted(frame.tokens.unique()):
        part = frame[frame.tokens == tokens]
        base = part[part.case == baseline]
        t0, m0 = statistics.median(base.seconds), statistics.median(base.peak_rss_gb)
        for case in cases:
            c = part[part.case == case]
            if not len(c):
                continue
            t, m = statistics.median(c.seconds), statistics.median(c.peak_rss_gb)
            spread = (c.seconds.max() - c.seconds.min()) if len(c) > 1 else 0.0
            note = f"  ({c.error.dropna().iloc[0]})" if "error" in c and c.error.notna().any() else ""
            print(f"{tokens:>7} {case:>17} {t:>9.2f} {spread:>9.2f} {m:>8.2f} {t / t0:>10.3f} {m / m0:>9.3f}{note}")
    return frame

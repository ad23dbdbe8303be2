"""Context extension at inference: perplexity and loss by position past the trained length, unscaled
and under linear, YaRN and Llama 3 scaling (README "Beyond the paper", docs/how-to/rope-scaling.md).

    python analyses/context_extension.py --model smollm2-135m --factor 2 --windows 2

Writes ``context_extension_MODEL.{png,pdf,csv}`` (the table) and ``..._curves.csv`` (loss by
position) to ``--out`` (default ``figures/``). Minutes on a CPU: every setting reads
``windows x factor x trained length`` tokens.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ropescope
from ropescope.files import name_part
from ropescope.plots.prope import context_extension_figure
from ropescope.plots.style import save_figure
from ropescope.prompts import load_text
from ropescope.prope.context_extension import SCALING_TYPES, context_extension

REPO = Path(__file__).resolve().parents[1]

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", default="smollm2-135m")
parser.add_argument("--text", default="stdlib", help="built-in text or a UTF-8 file (default: stdlib)")
parser.add_argument("--factor", type=float, default=2.0)
parser.add_argument("--types", default=",".join(SCALING_TYPES))
parser.add_argument("--windows", type=int, default=1)
parser.add_argument("--bucket", type=int, default=None, help="tokens per loss-by-position bin (default L/8)")
parser.add_argument("--out", type=Path, default=REPO / "figures")
args = parser.parse_args()

started = time.perf_counter()
lm = ropescope.load_model(args.model)
text = load_text(args.text)
table, curves = context_extension(
    lm,
    lm.tokenizer,
    text,
    factor=args.factor,
    types=[t for t in args.types.split(",") if t],
    windows=args.windows,
    bucket=args.bucket,
    progress=lambda name: print(f"{time.perf_counter() - started:7.1f} s  {name}", flush=True),
)
stem = args.out / f"context_extension_{name_part(args.model)}"
args.out.mkdir(parents=True, exist_ok=True)
table.to_csv(f"{stem}.csv", index=False)
curves.to_csv(f"{stem}_curves.csv", index=False)
save_figure(context_extension_figure(table, curves, lm.name, Path(args.text).name), stem)
print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
print(f"written {stem}.png/.pdf/.csv in {time.perf_counter() - started:.0f} s")

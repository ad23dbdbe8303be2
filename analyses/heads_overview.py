"""Heads of a model: classification table, positional-vs-high-frequency scatter, causal test on the
positional heads, and the attention map, chunk norms and Cauchy-Schwarz table of the strongest
previous-token head (PAPER_SPEC F5, F6, F14-F16, T3-T5, target 4). Heads are found, never named."""

import json

from common import arguments, stem

import ropescope
from ropescope.head_views import cauchy_schwarz_table, head_view
from ropescope.headscan import POSITIONAL, causal_test, scan_heads
from ropescope.plots import save_figure
from ropescope.plots_heads import attention_figure, causal_figure, chunk_norms_figure, heads_scatter_figure

args = arguments(__doc__)
model, tokenizer = ropescope.load_model(args.model)
texts = ropescope.load_prompts(args.prompts)
report = scan_heads(model, tokenizer, texts, model_id=args.model)
table, agreement = report.table, report.agreement()
target = stem(args.out, "heads_table", args.model)
table.to_csv(f"{target}.csv", index=False)
scatter = heads_scatter_figure(table, args.model, report.hf_fraction, agreement)
save_figure(scatter, stem(args.out, "heads_scatter", args.model))
(args.out / f"heads_agreement_{args.model}.json").write_text(json.dumps(agreement, indent=2))
positional = table[table["class"].isin(POSITIONAL)]
chosen = [(int(r.layer), int(r.head), int(r.target.split()[1])) for r in positional.itertuples()]
if chosen:
    causal = causal_test(model, tokenizer, texts, chosen, n_chunks=8, draws=5)
    causal.to_csv(f"{stem(args.out, 'causal_test', args.model)}.csv", index=False)
    save_figure(causal_figure(causal, args.model), stem(args.out, "causal_test", args.model))
previous = table[table["class"] == "previous-token"]
if len(previous):
    layer, head = int(previous.iloc[0]["layer"]), int(previous.iloc[0]["head"])
    view = head_view(model, tokenizer, layer, head, texts[0], max_tokens=40)
    name = f"previous_token_L{layer}H{head}"
    save_figure(attention_figure(view, args.model), stem(args.out, f"fig05_attention_{name}", args.model))
    save_figure(chunk_norms_figure(view, args.model), stem(args.out, f"fig06_chunk_norms_{name}", args.model))
    table_path = stem(args.out, f"table03_cauchy_schwarz_L{layer}H{head}", args.model)
    cauchy_schwarz_table(view).to_csv(f"{table_path}.csv", index=False)
else:
    print("no previous-token head found at the chosen threshold")
print(table["class"].value_counts().to_string())
print(json.dumps(agreement))

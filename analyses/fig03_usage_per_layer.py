"""F3: mean query and key chunk norm per layer and chunk (PAPER_SPEC section 1)."""

from common import arguments, cached_profile, stem

from ropescope.plots import layer_usage_figure, save_figure

args = arguments(__doc__)
prof = cached_profile(args.model, args.prompts)
target = stem(args.out, "fig03_usage_per_layer", args.model)
save_figure(layer_usage_figure(prof, ("q", "k")), target)
frame = prof.frame()
table = (
    frame[frame.tensor.isin(["q", "k"])]
    .groupby(["tensor", "layer", "chunk", "frequency"], as_index=False)["mean_norm"]
    .mean()
)
table.to_csv(f"{target}.csv", index=False)
print(f"wrote {target}.png/.pdf/.csv")

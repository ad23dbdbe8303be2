"""F13: the same map for value vectors, which RoPE does not rotate (a control for F3)."""

from common import arguments, cached_profile, stem

from ropescope.plots import layer_usage_figure, save_figure

args = arguments(__doc__)
prof = cached_profile(args.model, args.prompts)
target = stem(args.out, "fig13_value_usage_per_layer", args.model)
save_figure(layer_usage_figure(prof, ("v",)), target)
frame = prof.frame()
frame[frame.tensor == "v"].groupby(["layer", "chunk"], as_index=False)["mean_norm"].mean().to_csv(
    f"{target}.csv", index=False
)
print(f"wrote {target}.png/.pdf/.csv")

"""F4: mean query and key chunk norm per head of one layer (0-based)."""

from common import arguments, cached_profile, stem

from ropescope.plots import head_usage_figure, save_figure

args = arguments(__doc__, layer=0)
prof = cached_profile(args.model, args.prompts)
target = stem(args.out, f"fig04_usage_per_head_layer{args.layer}", args.model)
save_figure(head_usage_figure(prof, args.layer), target)
frame = prof.frame()
frame[(frame.layer == args.layer) & frame.tensor.isin(["q", "k"])].to_csv(f"{target}.csv", index=False)
print(f"wrote {target}.png/.pdf/.csv")

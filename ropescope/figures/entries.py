"""The entries of the paper-figure registry: one function per figure or table, drawn from a
:class:`~ropescope.figures.context.FigureContext`.

Each entry writes ``<id>_<what>_<model>.png`` and ``.pdf`` plus the plotted numbers as CSV into
the output directory. Heads shown (F5-F7, F12, F14-F18, T3) are *found* in the profiled model
(strongest diagonal / previous-token head, best trigger-token head, most low-frequency semantic
head), never hard-coded; an entry says so in its notes when none is found.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ropescope import theory as syn
from ropescope.figures.context import FigureContext
from ropescope.plots.style import save_figure
from ropescope.plots.usage import head_usage_figure, layer_usage_figure
from ropescope.profiling.bands import head_band_shares

DOMAINS = ("shakespeare", "italian", "chinese", "python", "addition")
SECOND_FAMILY = "smollm2-135m"


def _save(fig, ctx: FigureContext, what: str, table: pd.DataFrame | None = None, per_model: bool = True) -> None:
    stem = ctx.stem(what, per_model)
    save_figure(fig, stem)
    if table is not None:
        table.to_csv(f"{stem}.csv", index=False)


def fig_f2(ctx):
    from ropescope.plots.theory import decay_figure

    curves = syn.decay_curves()
    _save(
        decay_figure(curves, 256, 10_000.0), ctx, "fig02_decay_ones_vs_gaussian", pd.DataFrame(curves), per_model=False
    )


def fig_f8(ctx):
    from ropescope.plots.theory import random_rope_figure

    curves = {L: syn.random_rope_curves(L) for L in (10_000, 20_000, 50_000)}
    table = pd.concat([pd.DataFrame(c).assign(L=L) for L, c in curves.items()])
    _save(random_rope_figure(curves), ctx, "fig08_random_rope", table, per_model=False)


def fig_f9(ctx):
    from ropescope.plots.theory import fixed_pair_figure

    curves = {theta: syn.fixed_gaussian_curve(theta) for theta in (10_000.0, 500_000.0)}
    table = pd.concat([pd.DataFrame(c).assign(theta=t) for t, c in curves.items()])
    _save(fixed_pair_figure(curves), ctx, "fig09_fixed_gaussian_pair", table, per_model=False)


def fig_theory(ctx):
    from ropescope.plots.theory import theory_figure

    _save(theory_figure(), ctx, "theory_p31_p52_t53_t61", per_model=False)


def _usage_table(prof, tensors):
    frame = prof.frame()
    return frame[frame.tensor.isin(tensors)].groupby(["tensor", "layer", "chunk"], as_index=False)["mean_norm"].mean()


def fig_f3(ctx):
    prof = ctx.profile()
    _save(layer_usage_figure(prof, ("q", "k")), ctx, "fig03_usage_per_layer", _usage_table(prof, ["q", "k"]))


def fig_f13(ctx):
    prof = ctx.profile()
    _save(layer_usage_figure(prof, ("v",)), ctx, "fig13_value_usage_per_layer", _usage_table(prof, ["v"]))


def fig_f4(ctx):
    found = ctx.found("previous-token") or ctx.found("diagonal")
    layer = found[0] if found else 0
    prof = ctx.profile()
    frame = prof.frame()
    _save(
        head_usage_figure(prof, layer),
        ctx,
        f"fig04_usage_per_head_layer{layer}",
        frame[(frame.layer == layer) & frame.tensor.isin(["q", "k"])],
    )


def _positional_heads(ctx):
    found = [(cls, ctx.found(cls)) for cls in ("diagonal", "previous-token")]
    return [(cls, head) for cls, head in found if head]


def fig_f5(ctx):
    from ropescope.plots.heads import attention_figure

    heads = _positional_heads(ctx)
    if not heads:
        ctx.notes.append("F5: no diagonal or previous-token head at the threshold")
    for cls, (layer, head) in heads:
        view = ctx.view(layer, head)
        _save(
            attention_figure(view, ctx.model_name),
            ctx,
            f"fig05_attention_{cls}_L{layer}H{head}",
            pd.DataFrame(view.attention, columns=view.tokens, index=view.tokens).reset_index(),
        )


def fig_f6(ctx):
    from ropescope.plots.heads import chunk_norms_figure

    for cls, (layer, head) in _positional_heads(ctx):
        view = ctx.view(layer, head)
        table = pd.DataFrame(view.q_chunk_norms).add_prefix("q_chunk_").assign(token=view.tokens)
        _save(chunk_norms_figure(view, ctx.model_name), ctx, f"fig06_chunk_norms_{cls}_L{layer}H{head}", table)


def fig_t3(ctx):
    from ropescope.heads.views import cauchy_schwarz_table
    from ropescope.plots.heads import cauchy_schwarz_figure

    for cls, (layer, head) in _positional_heads(ctx):
        view = ctx.view(layer, head)
        table = cauchy_schwarz_table(view)
        figure = cauchy_schwarz_figure(table, view, ctx.model_name, cls)
        _save(figure, ctx, f"table03_cauchy_schwarz_{cls}_L{layer}H{head}", table)


def fig_f7(ctx):
    from ropescope.heads.triggers import search_trigger_heads
    from ropescope.plots.heads import attention_figure, chunk_norms_figure, logits_figure
    from ropescope.prompts import load_prompts

    model = ctx.model()
    tokenizer = model.tokenizer
    texts = load_prompts(ctx.prompts)
    best, candidates = search_trigger_heads(model, tokenizer, texts)
    pd.DataFrame(candidates).to_csv(f"{ctx.stem('fig07_trigger_head_candidates')}.csv", index=False)
    if best is None:
        ctx.notes.append("F7/F12/F17: no trigger-token head found (no gap above 0.2)")
        return
    text = next((t for t in texts if best.token in t), texts[0])
    start = max(0, text.index(best.token) - 40) if best.token in text else 0
    start = text.rfind(" ", 0, start) + 1 if start else 0  # begin at a word
    view = ctx.view(best.layer, best.head, text[start:], max_tokens=24)
    what = f"L{best.layer}H{best.head}_token{best.token.strip() or 'space'}"
    trigger = best.token
    _save(attention_figure(view, ctx.model_name, trigger=trigger), ctx, f"fig07_trigger_head_attention_{what}")
    _save(
        logits_figure(view, ctx.model_name, trigger=trigger),
        ctx,
        f"fig12_trigger_head_logits_{what}",
        pd.DataFrame(view.logits, columns=view.tokens),
    )
    _save(chunk_norms_figure(view, ctx.model_name, trigger=trigger), ctx, f"fig17_trigger_head_chunk_norms_{what}")
    ctx.notes.append(
        f"F7: trigger head L{best.layer}H{best.head} on {best.token!r}: "
        f"{best.trigger_attention:.2f} on the trigger vs {best.other_attention:.2f} otherwise, "
        f"{best.other_sink:.2f} on BOS otherwise ({best.count} rows)"
    )


def fig_f14(ctx):
    """F14-F16: the paper's triptych (query chunk norms, key chunk norms, attention) for every
    diagonal and previous-token head that passes the scan's threshold, strongest first."""
    from ropescope.plots.heads import positional_head_figure

    report = ctx.heads()
    table = report.table
    positional = table[table["class"].astype(str).isin(["diagonal", "previous-token"])]
    if not len(positional):
        ctx.notes.append(f"F14-F16: no diagonal or previous-token head at threshold {report.threshold:g}")
    for _, row in positional.iterrows():
        cls, layer, head = str(row["class"]), int(row["layer"]), int(row["head"])
        view = ctx.view(layer, head)
        table_out = pd.concat(
            [
                pd.DataFrame({"token": view.tokens}),
                pd.DataFrame(view.q_chunk_norms).add_prefix("q_chunk_"),
                pd.DataFrame(view.k_chunk_norms).add_prefix("k_chunk_"),
            ],
            axis=1,
        )
        figure = positional_head_figure(view, ctx.model_name, cls, float(row["score"]), report.threshold)
        _save(figure, ctx, f"fig14_16_{cls}_L{layer}H{head}", table_out)


def fig_f18(ctx):
    """F18: the semantic/mixed head whose queries put the largest share of norm in the slowest quarter."""
    from ropescope.plots.heads import chunk_norms_figure

    table = ctx.heads().table
    prof = ctx.heads().profile
    share = head_band_shares(prof.stats["q"].mean.numpy(), prof.geometry)[..., -1]  # the slowest quarter
    semantic = table[table["class"].astype(str) == "semantic/mixed"]
    if not len(semantic):
        ctx.notes.append("F18: no semantic/mixed head")
        return
    best = max(semantic.itertuples(), key=lambda r: share[r.layer, r.head])
    layer, head = int(best.layer), int(best.head)
    view = ctx.view(layer, head)
    _save(
        chunk_norms_figure(view, ctx.model_name),
        ctx,
        f"fig18_semantic_head_chunk_norms_L{layer}H{head}",
        pd.DataFrame(view.q_chunk_norms).add_prefix("q_chunk_").assign(token=view.tokens),
    )
    ctx.notes.append(
        f"F18: semantic head L{layer}H{head}, {share[layer, head]:.0%} of query norm in the slowest quarter"
    )


def fig_f19(ctx):
    from ropescope.plots.domains import domains_figure

    profiles = {d: ctx.profile(d) for d in DOMAINS}
    usage = {d: p.layer_usage("q") for d, p in profiles.items()}
    similarity = domain_similarity(usage)
    similarity.to_csv(f"{ctx.stem('fig19_domain_similarity')}.csv")
    _save(domains_figure(usage, similarity, ctx.model_name), ctx, "fig19_usage_across_domains")


def domain_similarity(usage: dict[str, np.ndarray]) -> pd.DataFrame:
    """Spearman rank correlation between domains of the flattened per-(layer, chunk) query usage."""
    frame = pd.DataFrame({d: u.ravel() for d, u in usage.items()})
    return frame.corr(method="spearman")


def fig_f10(ctx):
    """F10/F11 analogue: F3 and F4 on a second family (SmolLM2-135M, Llama family) when installed."""
    from ropescope.model.bundled import BUNDLED

    if ctx.model_name != "gemma-3-270m" or not BUNDLED[SECOND_FAMILY].installed():
        ctx.notes.append("F10/F11: run with --model smollm2-135m (or any other family) for the second family")
        return
    other = FigureContext(SECOND_FAMILY, ctx.out, ctx.prompts, ctx.notes, load_options=ctx.load_options)
    fig_f3(other)
    fig_f4(other)
    other._cache.clear()


def fig_t2(ctx):
    """T2: the from-scratch table, if ``ropescope train-prope`` has been run into runs/t2."""
    from ropescope.plots.prope import t2_figure

    path = Path("runs/t2/summary.csv")
    if not path.is_file():
        ctx.notes.append("T2: run 'ropescope train-prope' first (results go to runs/t2)")
        return
    summary = pd.read_csv(path)
    pd.read_csv(path.parent / "runs.csv").to_csv(f"{ctx.stem('table02_t2_runs', per_model=False)}.csv", index=False)
    config = json.loads((path.parent / "config.json").read_text())
    title = f"T2 from scratch ({config['layers']} layers, {config['steps']} steps, {config['seeds']} seeds; mean, sd)"
    _save(t2_figure(summary, title), ctx, "table02_t2_from_scratch", summary, per_model=False)


def fig_heads(ctx):
    """All heads: classification table, positional-vs-high-frequency scatter, causal test."""
    from ropescope.heads.causal import causal_test
    from ropescope.heads.scan import POSITIONAL
    from ropescope.plots.heads import causal_figure, heads_scatter_figure
    from ropescope.prompts import load_prompts

    report = ctx.heads()
    table, agreement = report.table, report.agreement()
    table.to_csv(f"{ctx.stem('heads_table')}.csv", index=False)
    Path(f"{ctx.stem('heads_agreement')}.json").write_text(json.dumps(agreement, indent=2))
    scatter = heads_scatter_figure(table, ctx.model_name, report.hf_fraction, agreement, report.threshold)
    _save(scatter, ctx, "heads_scatter")
    positional = table[table["class"].isin(POSITIONAL)]
    chosen = [(int(r.layer), int(r.head), int(r.target_offset)) for r in positional.itertuples()]
    if chosen:
        model = ctx.model()
        tokenizer = model.tokenizer
        causal = causal_test(model, tokenizer, load_prompts(ctx.prompts), chosen, n_chunks=8, draws=5)
        _save(causal_figure(causal, ctx.model_name), ctx, "causal_test", causal)


def fig_prope(ctx):
    """p-RoPE at inference on the pretrained model (no fine-tuning), built-in held-out text."""
    from ropescope.plots.prope import prope_figure
    from ropescope.prompts import load_text
    from ropescope.prope.perplexity import prope_table

    model = ctx.model()
    tokenizer = model.tokenizer
    table = prope_table(model, tokenizer, load_text("heldout"), [0.25, 0.5, 0.75], context=512)
    _save(prope_figure(table, ctx.model_name, "heldout", 512), ctx, "prope_perplexity", table)

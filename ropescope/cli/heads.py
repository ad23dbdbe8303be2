"""``ropescope heads`` (classify every head, explain it by frequency, causal test) and
``ropescope head`` (one head on one prompt: views and the Cauchy-Schwarz table)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ropescope.cli.choices import FORMAT_OPTION, TableFormat
from ropescope.cli.common import (
    MODEL_HELP,
    OVERWRITE_HELP,
    PROMPTS_HELP,
    check_out,
    default_out,
    echo,
    load,
    markdown_table,
    model_stem,
    output_directory,
    progress,
    say,
    user_path,
    where_it_runs,
)
from ropescope.cli.report import REPORT_OPTION
from ropescope.errors import RopescopeError
from ropescope.files import write_table
from ropescope.heads.defaults import ABLATE_CHUNKS, CAUSAL_DRAWS, HF_FRACTION, MAX_OFFSET, THRESHOLD, VIEW_TOKENS
from ropescope.model.bundled import DEFAULT_MODEL
from ropescope.prompts import load_prompts

TABLE_COLUMNS = [
    "layer",
    "head",
    "class",
    "score",
    "target",
    "offset_0",
    "offset_1",
    "sink",
    "hf_score",
    "attr_hf_share",
    "attr_top_chunks",
]


@where_it_runs
def heads_command(
    model: str = typer.Argument(DEFAULT_MODEL, help=MODEL_HELP),
    prompts: str = typer.Option("shakespeare", help=PROMPTS_HELP),
    max_tokens: int = typer.Option(None, min=1, help="Cut prompts to this many tokens.", show_default="model context"),
    max_offset: int = typer.Option(MAX_OFFSET, min=1, help="Score offsets 0..K."),
    threshold: float = typer.Option(
        THRESHOLD, min=0, max=1, help="Mean attention that makes a head diagonal, previous-token, ..."
    ),
    hf_fraction: float = typer.Option(
        HF_FRACTION, min=0, max=1, help="Fraction of fastest chunks counted as high frequency."
    ),
    ablate: int = typer.Option(
        ABLATE_CHUNKS, min=1, help="Chunks zeroed in the causal test (above half a head's chunks: lowered, noted)."
    ),
    draws: int = typer.Option(CAUSAL_DRAWS, min=0, help="Random draws of chunks in the causal test."),
    out: Path = typer.Option(None, help="Output directory.", show_default="runs/MODEL-heads"),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    by_position: bool = typer.Option(
        False,
        "--by-position",
        help="Also split offset scores by query position and measure each chunk's logit term against distance.",
    ),
    with_profile: bool = typer.Option(
        False,
        "--with-profile",
        help="Also profile the values in the same pass: the run directory then holds the whole q, k, v profile "
        "(chunk_norms table, usage figures), as 'ropescope profile' writes it, taken one prompt per pass.",
    ),
    report_page: bool = REPORT_OPTION,
    table_format: TableFormat = FORMAT_OPTION,
    model_options: dict | None = None,
) -> None:
    """Classify every head (diagonal, previous-token, BOS sink, ...), explain it by frequency, test it causally.

    Scores: offset_d is the mean attention a query at position i pays the key
    at i - d, over the rows i >= d + 1 that can see that key (a sliding window
    or an attention chunk hides it from some rows); sink is the mean attention
    on the first token (BOS where the tokenizer adds one), over rows i >= 1
    that can see it. With learned sinks (GPT-OSS) a score is the attention
    the key's value receives; the sink logit takes the rest of the row.
    """
    from ropescope.heads.causal import causal_test
    from ropescope.heads.scan import (
        POSITIONAL,
        check_scan_options,
        distance_term_table,
        long_head_table,
        position_score_table,
        scan_heads,
        sink_heads,
        sink_position_table,
    )
    from ropescope.heads.views import head_view, prompt_attention
    from ropescope.plots.heads import attention_figure, causal_figure, chunk_norms_figure, heads_scatter_figure
    from ropescope.plots.heads_position import heads_by_position_figure, sinks_by_frequency_figure
    from ropescope.plots.style import save_figure
    from ropescope.plots.usage import write_profile_figures
    from ropescope.profiling.run import check_profile_options
    from ropescope.profiling.summary import summary_text
    from ropescope.report import report_data, write_report

    check_profile_options(max_tokens=max_tokens)
    check_scan_options(max_offset=max_offset, threshold=threshold, hf_fraction=hf_fraction)
    table_format = TableFormat(table_format).value
    out = user_path(out or default_out(model, "-heads"))
    check_out(out, overwrite, inputs=(model, prompts))
    texts = load_prompts(prompts)
    loaded = load(model, **model_options)
    tokenizer = loaded.tokenizer
    with progress(f"scoring heads on {len(texts)} prompts", len(texts)) as update:
        report = scan_heads(
            loaded,
            tokenizer,
            texts,
            max_tokens=max_tokens,
            max_offset=max_offset,
            threshold=threshold,
            hf_fraction=hf_fraction,
            model_id=loaded.name,
            prompt_set=Path(prompts).name if os.sep in prompts else prompts,
            progress=lambda n: update(completed=n),
            by_position=by_position,
            tensors=("q", "k", "v") if with_profile else ("q", "k"),
        )
    table, agreement = report.table, report.agreement()
    positional = table[table["class"].isin(POSITIONAL)]
    chosen = [(int(r.layer), int(r.head), int(r.target_offset)) for r in positional.itertuples()]
    causal = None
    if chosen:
        say(f"causal test on {len(chosen)} positional heads ...")
        causal = causal_test(loaded, tokenizer, texts, chosen, n_chunks=ablate, draws=draws, max_tokens=max_tokens)
    name = model_stem(model)
    attention = prompt_attention(loaded, tokenizer, texts[0])  # every head on the first prompt, for the report
    with output_directory(out) as tmp:
        table.to_csv(tmp / "heads.csv", index=False)  # what `ropescope report` reads back later
        if table_format != "csv":
            write_table(table, tmp / "heads", table_format)
        write_table(long_head_table(table), tmp / "heads_long", table_format)
        (tmp / "heads.md").write_text(markdown_table(table[TABLE_COLUMNS]), encoding="utf-8")
        saved = {**agreement, "threshold": threshold, "max_offset": report.max_offset, "hf_fraction": hf_fraction}
        (tmp / "agreement.json").write_text(json.dumps(saved, indent=2), encoding="utf-8")
        (tmp / "attention.json").write_text(json.dumps(attention), encoding="utf-8")
        report.profile.save(tmp / "profile.safetensors")
        if with_profile:  # the same files a profile run writes, from the same forward passes
            write_table(report.profile.frame(), tmp / "chunk_norms", table_format)
            write_table(report.profile.massive_values(), tmp / "massive_values", table_format)
            (tmp / "summary.txt").write_text(summary_text(report.profile), encoding="utf-8")
            write_profile_figures(report.profile, tmp)
        scatter = heads_scatter_figure(table, model, hf_fraction, agreement, threshold)
        save_figure(scatter, tmp / f"heads_scatter_{name}")
        if causal is not None:
            causal.to_csv(tmp / "causal.csv", index=False)
            if table_format != "csv":
                write_table(causal, tmp / "causal", table_format)
            (tmp / "causal.md").write_text(markdown_table(causal), encoding="utf-8")
            save_figure(causal_figure(causal, model), tmp / f"causal_test_{name}")
        for cls in table["class"].cat.categories:
            top = table[table["class"] == cls]
            if len(top):
                layer, head = int(top.iloc[0]["layer"]), int(top.iloc[0]["head"])
                view = head_view(loaded, tokenizer, layer, head, texts[0], max_tokens=VIEW_TOKENS)
                stem = f"{cls.replace('/', '-')}_L{layer}H{head}_{name}"
                save_figure(attention_figure(view, model), tmp / f"attention_{stem}")
                save_figure(chunk_norms_figure(view, model), tmp / f"chunk_norms_{stem}")
        if by_position:
            write_table(position_score_table(report), tmp / "heads_by_position", table_format)
            write_table(distance_term_table(report), tmp / "heads_distance_terms", table_format)
            save_figure(heads_by_position_figure(report, model), tmp / f"heads_by_position_{name}")
            write_table(sink_position_table(report, sink_heads(report)), tmp / "sinks_by_position", table_format)
            save_figure(sinks_by_frequency_figure(report, model), tmp / f"sinks_by_frequency_{name}")
        if report_page:  # from the results in memory, not from the files just written
            data = report_data(
                report.profile, heads=table, agreement=saved, causal=causal, attention=attention, threshold=threshold
            )
            write_report(data, tmp / "report.html")
    counts = table["class"].value_counts().reindex(table["class"].cat.categories).fillna(0).astype(int)
    echo("heads per class: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    echo(
        f"positional vs high-frequency: Spearman {agreement['spearman']:.3f}; "
        f"{agreement['n_positional']} positional heads, precision at n {agreement['precision_at_n']:.2f}"
    )
    echo(table[TABLE_COLUMNS].head(12).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if causal is not None:
        echo("\ncausal test (mean attention on the head's offset):")
        echo(causal.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    echo(f"wrote {out}/")


@where_it_runs
def head_command(
    model: str = typer.Argument(..., help=MODEL_HELP),
    layer: int = typer.Argument(..., help="Layer, 0-based."),
    head: int = typer.Argument(..., help="Query head, 0-based."),
    prompt: str = typer.Option(..., help="The prompt text."),
    max_tokens: int = typer.Option(VIEW_TOKENS, help="Cut the prompt to this many tokens."),
    rows: str = typer.Option("0:7", help="Query tokens of the Cauchy-Schwarz table, FIRST:LAST."),
    out: Path = typer.Option(None, help="Output directory.", show_default="runs/MODEL-L{layer}H{head}"),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    model_options: dict | None = None,
) -> None:
    """One head on one prompt: attention, logits and chunk-norm figures; the Cauchy-Schwarz table."""
    from ropescope.heads.views import cauchy_schwarz_table, head_view
    from ropescope.plots.heads import attention_figure, chunk_norms_figure, logits_figure
    from ropescope.plots.style import save_figure

    try:
        first, last = (int(x) for x in rows.split(":"))
    except ValueError:
        raise RopescopeError(f"--rows must look like FIRST:LAST (e.g. 0:7), got {rows!r}") from None
    out = user_path(out or default_out(model, f"-L{layer}H{head}"))
    check_out(out, overwrite, inputs=(model,))
    loaded = load(model, **model_options)
    loaded.anatomy.check_head(layer, head)
    view = head_view(loaded, loaded.tokenizer, layer, head, prompt, max_tokens=max_tokens)
    table = cauchy_schwarz_table(view, first, last)
    stem = f"L{layer}H{head}_{model_stem(model)}"
    with output_directory(out) as tmp:
        save_figure(attention_figure(view, model), tmp / f"attention_{stem}")
        save_figure(logits_figure(view, model), tmp / f"logits_{stem}")
        save_figure(chunk_norms_figure(view, model), tmp / f"chunk_norms_{stem}")
        table.to_csv(tmp / "cauchy_schwarz.csv", index=False)
    echo(f"Cauchy-Schwarz table, layer {layer} head {head} (0-based), logits before soft-capping:")
    echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    echo(f"wrote {out}{os.sep}")

"""``ropescope heads`` (classify every head, explain it by frequency, causal test) and
``ropescope head`` (one head on one prompt: views and the Cauchy-Schwarz table)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ropescope.cli_support import check_out, output_directory, quiet_libraries, say, stderr_console
from ropescope.errors import RopescopeError
from ropescope.models import DEFAULT_MODEL

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


def _markdown(frame) -> str:
    """A plain markdown table (no extra dependency)."""

    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _positive(name: str, value: float, upper: float | None = None) -> None:
    if not value > 0 or (upper is not None and value > upper):
        limit = f" and at most {upper:g}" if upper is not None else ""
        raise RopescopeError(f"--{name} must be positive{limit}, got {value}")


def heads_command(
    model: str = typer.Argument(DEFAULT_MODEL, help="Bundled model name, HF id or directory, or .gguf path."),
    prompts: str = typer.Option("shakespeare", help="Built-in prompt set name or a prompt file."),
    max_tokens: int = typer.Option(None, help="Cut prompts to this many tokens [default: model context]."),
    max_offset: int = typer.Option(8, help="Score offsets 0..K."),
    threshold: float = typer.Option(0.5, help="Mean attention that makes a head diagonal, previous-token, ..."),
    hf_fraction: float = typer.Option(0.125, help="Fraction of fastest chunks counted as high frequency."),
    ablate: int = typer.Option(8, help="Chunks zeroed in the causal test."),
    draws: int = typer.Option(5, help="Random draws of chunks in the causal test."),
    out: Path = typer.Option(None, help="Output directory [default: runs/MODEL-heads]."),
    dtype: str = typer.Option("float32", help="Model dtype: float32, bfloat16, float16."),
    device: str = typer.Option(None, help="Torch device."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    trust_remote_code: bool = typer.Option(False, help="Allow a checkpoint's own Python code to run."),
) -> None:
    """Classify every head (diagonal, previous-token, BOS sink, ...), explain it by frequency, test it causally."""
    from rich.progress import Progress

    import ropescope
    from ropescope.head_views import head_view
    from ropescope.headscan import POSITIONAL, causal_test, scan_heads
    from ropescope.plots import save_figure
    from ropescope.plots_heads import (
        attention_figure,
        causal_figure,
        chunk_norms_figure,
        heads_scatter_figure,
    )

    if max_tokens is not None and max_tokens <= 0:
        raise RopescopeError(f"--max-tokens must be a positive number of tokens, got {max_tokens}")
    if max_offset < 1:
        raise RopescopeError(f"--max-offset must be at least 1, got {max_offset}")
    _positive("threshold", threshold, 1.0)
    _positive("hf-fraction", hf_fraction, 1.0)
    _positive("ablate", ablate)
    if draws < 0:
        raise RopescopeError(f"--draws must be zero or more, got {draws}")
    out = out or Path("runs") / f"{Path(model).name.removesuffix('.gguf')}-heads"
    check_out(out, overwrite)
    texts = ropescope.load_prompts(prompts)
    quiet_libraries()
    say(f"loading {model} ...")
    loaded, tokenizer = ropescope.load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    with Progress(transient=True, console=stderr_console()) as bar:
        task = bar.add_task(f"scoring heads on {len(texts)} prompts", total=len(texts))
        report = scan_heads(
            loaded,
            tokenizer,
            texts,
            max_tokens=max_tokens,
            max_offset=max_offset,
            threshold=threshold,
            hf_fraction=hf_fraction,
            model_id=model,
            progress=lambda n: bar.update(task, completed=n),
        )
    table, agreement = report.table, report.agreement()
    positional = table[table["class"].isin(POSITIONAL)]
    chosen = [(int(r.layer), int(r.head), int(r.target.split()[1])) for r in positional.itertuples()]
    causal = None
    if chosen:
        say(f"causal test on {len(chosen)} positional heads ...")
        causal = causal_test(loaded, tokenizer, texts, chosen, n_chunks=ablate, draws=draws, max_tokens=max_tokens)
    name = Path(model).name.removesuffix(".gguf")
    with output_directory(out, overwrite) as tmp:
        table.to_csv(tmp / "heads.csv", index=False)
        (tmp / "heads.md").write_text(_markdown(table[TABLE_COLUMNS]), encoding="utf-8")
        (tmp / "agreement.json").write_text(json.dumps(agreement, indent=2), encoding="utf-8")
        report.profile.save(tmp / "profile.safetensors")
        save_figure(heads_scatter_figure(table, model, hf_fraction, agreement), tmp / f"heads_scatter_{name}")
        if causal is not None:
            causal.to_csv(tmp / "causal.csv", index=False)
            (tmp / "causal.md").write_text(_markdown(causal), encoding="utf-8")
            save_figure(causal_figure(causal, model), tmp / f"causal_test_{name}")
        for cls in table["class"].cat.categories:
            top = table[table["class"] == cls]
            if len(top):
                layer, head = int(top.iloc[0]["layer"]), int(top.iloc[0]["head"])
                view = head_view(loaded, tokenizer, layer, head, texts[0], max_tokens=40)
                stem = f"{cls.replace('/', '-')}_L{layer}H{head}_{name}"
                save_figure(attention_figure(view, model), tmp / f"attention_{stem}")
                save_figure(chunk_norms_figure(view, model), tmp / f"chunk_norms_{stem}")
    counts = table["class"].value_counts().reindex(table["class"].cat.categories).fillna(0).astype(int)
    typer.echo("heads per class: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    typer.echo(
        f"positional vs high-frequency: Spearman {agreement['spearman']:.3f}; "
        f"{agreement['n_positional']} positional heads, precision at n {agreement['precision_at_n']:.2f}"
    )
    typer.echo(table[TABLE_COLUMNS].head(12).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if causal is not None:
        typer.echo("\ncausal test (mean attention on the head's offset):")
        typer.echo(causal.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"wrote {out}/")


def head_command(
    model: str = typer.Argument(..., help="Bundled model name, HF id or directory, or .gguf path."),
    layer: int = typer.Argument(..., help="Layer, 0-based."),
    head: int = typer.Argument(..., help="Query head, 0-based."),
    prompt: str = typer.Option(..., help="The prompt text."),
    max_tokens: int = typer.Option(40, help="Cut the prompt to this many tokens."),
    rows: str = typer.Option("0:7", help="Query tokens of the Cauchy-Schwarz table, FIRST:LAST."),
    out: Path = typer.Option(None, help="Output directory [default: runs/MODEL-L{layer}H{head}]."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
) -> None:
    """One head on one prompt: attention, logits and chunk-norm figures; the Cauchy-Schwarz table."""
    import ropescope
    from ropescope.head_views import cauchy_schwarz_table, check_head, head_view
    from ropescope.plots import save_figure
    from ropescope.plots_heads import attention_figure, chunk_norms_figure, logits_figure

    try:
        first, last = (int(x) for x in rows.split(":"))
    except ValueError:
        raise RopescopeError(f"--rows must look like FIRST:LAST (e.g. 0:7), got {rows!r}") from None
    out = out or Path("runs") / f"{Path(model).name.removesuffix('.gguf')}-L{layer}H{head}"
    check_out(out, overwrite)
    quiet_libraries()
    loaded, tokenizer = ropescope.load_model(model)
    check_head(loaded, layer, head)
    view = head_view(loaded, tokenizer, layer, head, prompt, max_tokens=max_tokens)
    table = cauchy_schwarz_table(view, first, last)
    stem = f"L{layer}H{head}_{Path(model).name.removesuffix('.gguf')}"
    with output_directory(out, overwrite) as tmp:
        save_figure(attention_figure(view, model), tmp / f"attention_{stem}")
        save_figure(logits_figure(view, model), tmp / f"logits_{stem}")
        save_figure(chunk_norms_figure(view, model), tmp / f"chunk_norms_{stem}")
        table.to_csv(tmp / "cauchy_schwarz.csv", index=False)
    typer.echo(f"Cauchy-Schwarz table, layer {layer} head {head} (0-based), logits before soft-capping:")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    typer.echo(f"wrote {out}{os.sep}")

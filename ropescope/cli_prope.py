"""``ropescope prope`` (p-RoPE perplexity of a pretrained model) and ``ropescope train-prope``
(the T2 experiment trained from scratch)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ropescope.cli_support import check_out, check_writable_parent, output_directory, quiet_libraries, say
from ropescope.errors import RopescopeError
from ropescope.models import DEFAULT_MODEL


def _fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RopescopeError(f"--p must be comma-separated fractions like 0.25,0.5,0.75,1; got {text!r}") from None
    if not values:
        raise RopescopeError("--p needs at least one fraction")
    for value in values:
        if math.isnan(value) or not 0 <= value <= 1:
            raise RopescopeError(f"p must be a fraction in [0, 1], got {value}")
    return values


def _variants(text: str) -> list[str]:
    from ropescope.prope import VARIANTS

    chosen = list(VARIANTS) if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for variant in chosen:
        if variant not in VARIANTS:
            raise RopescopeError(f"unknown p-RoPE variant {variant!r}; expected all or one of {', '.join(VARIANTS)}")
    return chosen


def prope_command(
    model: str = typer.Argument(DEFAULT_MODEL, help="Bundled model name, HF id or directory, or .gguf path."),
    p: str = typer.Option("0.25,0.5,0.75,1", "--p", help="Fractions of chunks that keep rotating."),
    variants: str = typer.Option("all", help="all, or a comma list of: p, reversed, partial."),
    text: str = typer.Option("heldout", help="Built-in text 'heldout' or a UTF-8 file."),
    context: int = typer.Option(512, help="Tokens per evaluation window."),
    batch_size: int = typer.Option(4, help="Windows per forward pass."),
    out: Path = typer.Option(None, help="Output directory [default: runs/MODEL-prope]."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
) -> None:
    """Perplexity of MODEL with p-RoPE variants at inference (no fine-tuning), against unmodified RoPE."""
    from rich.progress import Progress

    import ropescope
    from ropescope.cli_support import stderr_console
    from ropescope.perplexity import load_text, prope_table
    from ropescope.plots import save_figure
    from ropescope.plots_prope import prope_figure

    ps, chosen = _fractions(p), _variants(variants)
    if context < 2:
        raise RopescopeError(f"--context must be at least 2 tokens, got {context}")
    if batch_size <= 0:
        raise RopescopeError(f"--batch-size must be positive, got {batch_size}")
    out = out or Path("runs") / f"{Path(model).name.removesuffix('.gguf')}-prope"
    check_out(out, overwrite)
    body = load_text(text)
    quiet_libraries()
    say(f"loading {model} ...")
    loaded, tokenizer = ropescope.load_model(model)
    runs = 1 + sum(1 for _ in chosen for x in ps if x != 1.0)
    with Progress(transient=True, console=stderr_console()) as bar:
        task = bar.add_task("perplexity", total=runs)
        table = prope_table(
            loaded,
            tokenizer,
            body,
            ps,
            chosen,
            context=context,
            batch_size=batch_size,
            progress=lambda name: bar.update(task, advance=0 if name == "rope" else 1, description=name),
        )
    name = Path(model).name.removesuffix(".gguf")
    with output_directory(out, overwrite) as tmp:
        table.to_csv(tmp / "prope.csv", index=False)
        save_figure(prope_figure(table, model, Path(text).name, context), tmp / f"prope_perplexity_{name}")
    typer.echo(f"p-RoPE at inference on {model}, text {text}, windows of {context} tokens:")
    typer.echo(
        table[["variant", "p", "perplexity", "change", "ratio", "tokens"]].to_string(
            index=False, float_format=lambda v: f"{v:.3f}"
        )
    )
    typer.echo(f"wrote {out}/")


def train_prope_command(
    out: Path = typer.Option(Path("runs/t2"), help="Working directory: checkpoints, runs.csv, summary, figure."),
    seeds: int = typer.Option(3, help="Seeds per encoding."),
    steps: int = typer.Option(300, help="Training steps per model."),
    encodings: str = typer.Option("all", help="all, or a comma list of T2 rows (e.g. 'NoPE,0.75-RoPE')."),
    layers: int = typer.Option(4, help="Decoder layers."),
    hidden: int = typer.Option(128, help="Model width."),
    seq_len: int = typer.Option(128, help="Training context in bytes."),
    batch: int = typer.Option(16, help="Sequences per step."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in OUT (finished models are kept)."),
    overwrite: bool = typer.Option(False, help="Start over, deleting OUT."),
) -> None:
    """Train small Gemma-style models from scratch with every T2 encoding and compare validation perplexity."""
    import shutil

    from ropescope.plots import save_figure
    from ropescope.plots_prope import t2_figure
    from ropescope.train import ENCODINGS, TrainConfig, run_t2

    for name, value in (
        ("seeds", seeds),
        ("steps", steps),
        ("layers", layers),
        ("hidden", hidden),
        ("seq-len", seq_len),
        ("batch", batch),
    ):
        if value <= 0:
            raise RopescopeError(f"--{name} must be positive, got {value}")
    chosen = list(ENCODINGS) if encodings == "all" else [e.strip() for e in encodings.split(",") if e.strip()]
    for name in chosen:
        if name not in ENCODINGS:
            raise RopescopeError(f"unknown encoding {name!r}; expected all or some of: {', '.join(ENCODINGS)}")
    heads = 4
    if hidden % (2 * heads):  # RoPE needs an even head dimension
        raise RopescopeError(f"--hidden must be a multiple of {2 * heads} ({heads} heads, even head dim), got {hidden}")
    check_writable_parent(out)
    if out.exists() and not (resume or overwrite):
        raise RopescopeError(f"{out} already exists; pass --resume to continue it or --overwrite to start over")
    if out.exists() and overwrite:
        shutil.rmtree(out)
    config = TrainConfig(
        layers=layers,
        hidden=hidden,
        head_dim=hidden // heads,
        intermediate=3 * hidden,
        seq_len=seq_len,
        batch=batch,
        steps=steps,
        warmup=max(1, steps // 10),
        checkpoint_every=max(1, min(100, steps)),
    )
    quiet_libraries()
    say(f"training {len(chosen)} encodings x {seeds} seeds, {steps} steps each, in {out}/ (resumable)")
    try:
        runs, summary = run_t2(out, config, seeds, tuple(chosen), log=say)
    except KeyboardInterrupt:
        say(
            f"interrupted; finished models are in {out}/runs.csv, checkpoints in {out}/checkpoints; "
            f"continue with: ropescope train-prope --out {out} --resume"
        )
        raise SystemExit(130) from None
    summary.to_csv(out / "summary.csv", index=False)
    title = (
        f"T2 from scratch: {layers}-layer Gemma-style, {steps} steps x {batch} x {seq_len} bytes, "
        f"{seeds} seeds (mean, sd)"
    )
    save_figure(t2_figure(summary, title), out / "t2_validation_perplexity")
    typer.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"wrote {out}/ (runs.csv, summary.csv, t2_validation_perplexity.png)")

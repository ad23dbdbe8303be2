"""``ropescope prope`` (p-RoPE perplexity of a pretrained model) and ``ropescope train-prope``
(the T2 experiment trained from scratch)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer

from ropescope.cli.common import (
    MODEL_HELP,
    OVERWRITE_HELP,
    check_out,
    check_writable_parent,
    default_out,
    echo,
    load,
    lock_output,
    model_stem,
    output_directory,
    progress,
    quiet_libraries,
    resume_command,
    say,
    user_path,
    where_it_runs,
)
from ropescope.errors import Interrupted, RopescopeError
from ropescope.files import set_aside
from ropescope.model.bundled import DEFAULT_MODEL
from ropescope.options import BAND_LEVEL
from ropescope.prompts import load_prompts, load_text


def _fractions(text: str) -> list[float]:
    from ropescope.prope.frequencies import check_p

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RopescopeError(f"--p must be comma-separated fractions like 0.25,0.5,0.75,1; got {text!r}") from None
    if not values:
        raise RopescopeError("--p needs at least one fraction")
    for value in values:
        check_p(value)
    return values


def _variants(text: str) -> list[str]:
    from ropescope.prope.frequencies import VARIANTS, check_p
    from ropescope.prope.perplexity import BELOW_BAND

    chosen = list(VARIANTS) if text == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for variant in chosen:
        if variant != BELOW_BAND:
            check_p(1.0, variant)
    return chosen


def _band(loaded, texts: list[str], prompts: str, level: float = BAND_LEVEL):
    """The model's measured frequency band (queries) from a profile of ``texts`` (the set ``prompts``)."""
    from ropescope.profiling.run import profile

    with progress("band: profiling", len(texts)) as update:
        measured = profile(
            loaded, loaded.tokenizer, texts, tensors=("q",), prompt_set=prompts, progress=lambda n: update(completed=n)
        )
    return measured.frequency_band("q", level)


@where_it_runs
def prope_command(
    model: str = typer.Argument(DEFAULT_MODEL, help=MODEL_HELP),
    p: str = typer.Option("0.25,0.5,0.75,1", "--p", help="Fractions of chunks that keep rotating."),
    variants: str = typer.Option(
        "all",
        help="all (the paper's p, reversed, partial), or a comma list of: p, reversed, partial, below-band "
        "(no rotation below each layer's measured frequency band, located by profiling --band-prompts first).",
    ),
    band_prompts: str = typer.Option(
        "shakespeare", help="below-band: the prompt set (built-in or a file) whose profile locates the band."
    ),
    band_level: float = typer.Option(
        BAND_LEVEL,
        help="below-band: a layer's band is its peak chunk and the run around it at this fraction of the peak's "
        "mean query norm or more.",
    ),
    text: str = typer.Option(
        "heldout",
        help="Built-in text 'heldout' (about 1,300 tokens), 'stdlib' (this Python's docstrings, about 400,000 "
        "tokens: for long contexts) or a UTF-8 file.",
    ),
    context: int = typer.Option(512, min=2, help="Tokens per evaluation window."),
    windows: int = typer.Option(None, min=1, help="Evaluate the first N windows only.", show_default="all"),
    extrapolate: bool = typer.Option(
        False, help="Allow --context past the model's configured context (length extrapolation, on purpose)."
    ),
    batch_size: int = typer.Option(4, min=1, help="Windows per forward pass."),
    out: Path = typer.Option(None, help="Output directory.", show_default="runs/MODEL-prope"),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    model_options: dict | None = None,
) -> None:
    """Perplexity of MODEL with p-RoPE variants at inference (no fine-tuning), against unmodified RoPE."""
    from ropescope.plots.prope import prope_figure
    from ropescope.plots.style import save_figure
    from ropescope.prope.perplexity import BELOW_BAND, prope_table

    ps, chosen = _fractions(p), _variants(variants)
    out = user_path(out or default_out(model, "-prope"))
    check_out(out, overwrite, inputs=(model, text))
    body = load_text(text)
    if not 0 < band_level <= 1:
        raise RopescopeError(f"--band-level must be a fraction in (0, 1], got {band_level}")
    band_texts = load_prompts(band_prompts) if BELOW_BAND in chosen else None  # bad input refused before loading
    loaded = load(model, **model_options)
    band = _band(loaded, band_texts, band_prompts, band_level) if band_texts is not None else None
    runs = 1 + sum(1 if v == BELOW_BAND else sum(x != 1.0 for x in ps) for v in chosen)
    with progress("perplexity", runs) as update:
        table = prope_table(
            loaded,
            loaded.tokenizer,
            body,
            ps,
            chosen,
            context=context,
            batch_size=batch_size,
            windows=windows,
            extrapolate=extrapolate,
            band=band,
            progress=lambda name: update(advance=0 if name == "rope" else 1, description=name),
        )
    name = model_stem(model)
    with output_directory(out) as tmp:
        table.to_csv(tmp / "prope.csv", index=False)
        if band is not None:
            band.to_csv(tmp / "frequency_band.csv", index=False)
        save_figure(prope_figure(table, model, Path(text).name, context), tmp / f"prope_perplexity_{name}")
    echo(f"p-RoPE at inference on {model}, text {text}, windows of {context} tokens:")
    echo(
        table[
            ["variant", "p", "perplexity", "change", "ratio", "tokens"] + (["note"] if table.note.any() else [])
        ].to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
    echo(f"wrote {out}/")


def train_prope_command(
    out: Path = typer.Option(Path("runs/t2"), help="Working directory: checkpoints, runs.csv, summary, figure."),
    seeds: int = typer.Option(3, min=1, help="Seeds per encoding."),
    steps: int = typer.Option(300, min=1, help="Training steps per model."),
    encodings: str = typer.Option("all", help="all, or a comma list of T2 rows (e.g. 'NoPE,0.75-RoPE')."),
    layers: int = typer.Option(4, min=1, help="Decoder layers."),
    hidden: int = typer.Option(128, min=1, help="Model width (a multiple of 8: 4 heads of even size)."),
    seq_len: int = typer.Option(128, min=1, help="Training context in bytes."),
    batch: int = typer.Option(16, min=1, help="Sequences per step."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in OUT (finished models are kept)."),
    overwrite: bool = typer.Option(False, help="Start over; the old OUT is replaced only when the new run finishes."),
    profile_every: int = typer.Option(
        0,
        min=0,
        help="Every N steps (and at step 0), profile and scan the model on held-out bytes: "
        "training_profiles.csv, profiles/, training_dynamics.png (0: never).",
    ),
) -> None:
    """Train small Gemma-style models from scratch with every T2 encoding and compare validation perplexity."""
    from ropescope.dynamics import TrainingRecorder
    from ropescope.plots.dynamics import training_figure
    from ropescope.plots.prope import t2_figure
    from ropescope.plots.style import save_figure
    from ropescope.prope.train import ENCODINGS, TrainConfig, check_resume_options, check_train_options, run_t2

    chosen = list(ENCODINGS) if encodings == "all" else [e.strip() for e in encodings.split(",") if e.strip()]
    config = TrainConfig.small(layers=layers, hidden=hidden, seq_len=seq_len, batch=batch, steps=steps)
    check_train_options(config, chosen)
    out = user_path(out)
    check_writable_parent(out)
    if out.exists() and not (resume or overwrite):
        raise RopescopeError(f"{out} already exists; pass --resume to continue it or --overwrite to start over")
    if out.exists() and not out.is_dir():
        raise RopescopeError(f"output path {out} exists and is not a directory")
    lock_output(out)
    if resume:
        check_resume_options(out, config)
    quiet_libraries()
    say(f"training {len(chosen)} encodings x {seeds} seeds, {steps} steps each, in {out}/ (resumable)")
    # --overwrite replaces OUT only when the new run has finished: the old one waits beside it
    replaced = set_aside(out) if out.exists() and overwrite and not resume else None
    title = (
        f"T2 from scratch: {layers}-layer Gemma-style, {steps} steps x {batch} x {seq_len} bytes, "
        f"{seeds} seeds (mean, sd)"
    )
    try:
        recorder = TrainingRecorder(out, config.seq_len) if profile_every else None
        runs, summary = run_t2(
            out, config, seeds, tuple(chosen), log=say, snapshots=recorder, snapshot_every=profile_every
        )
        summary.to_csv(out / "summary.csv", index=False)
        save_figure(t2_figure(summary, title), out / "table02_t2_from_scratch")
        if recorder is not None:
            dynamics_title = (
                f"{title.split(':')[0]} dynamics: {layers}-layer Gemma-style, snapshot every {profile_every} steps"
            )
            save_figure(training_figure(recorder.table(), dynamics_title), out / "training_dynamics")
    except BaseException as exc:
        if replaced is not None:
            shutil.rmtree(out, ignore_errors=True)
            os.replace(replaced, out)
            shutil.rmtree(replaced.parent, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            if replaced is not None:
                raise Interrupted(f"{out}/ was left as it was before this --overwrite run") from None
            raise Interrupted(
                f"finished models are in {out}/runs.csv, checkpoints in {out}/checkpoints; "
                f"continue with: {resume_command()}"
            ) from None
        raise
    if replaced is not None:
        shutil.rmtree(replaced.parent, ignore_errors=True)
    echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    extra = ", training_profiles.csv, profiles/, training_dynamics.png" if profile_every else ""
    echo(f"wrote {out}/ (runs.csv, summary.csv, table02_t2_from_scratch.png{extra})")

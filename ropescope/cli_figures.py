"""``ropescope figures``: every figure and table of the paper for one model."""

from __future__ import annotations

from pathlib import Path

import typer

from ropescope.cli_support import quiet_libraries, say, stderr_console
from ropescope.models import DEFAULT_MODEL


def figures_command(
    model: str = typer.Option(DEFAULT_MODEL, help="Bundled model name, HF id or directory, or .gguf path."),
    only: str = typer.Option(None, help="Comma list of figure ids, e.g. F3,F5 (default: all)."),
    prompts: str = typer.Option("shakespeare", help="Prompt set for the model figures."),
    out: Path = typer.Option(Path("figures"), help="Directory for the figures (files are replaced)."),
) -> None:
    """Regenerate the paper's figures and tables (PNG, PDF and CSV) for MODEL."""
    from rich.progress import Progress

    from ropescope.figures import FigureContext, select

    chosen = select(only)
    quiet_libraries()
    context = FigureContext(model, out, prompts)
    with Progress(console=stderr_console()) as bar:
        task = bar.add_task("figures", total=len(chosen))
        for figure in chosen:
            bar.update(task, description=f"{figure.id}: {figure.title}")
            figure.render(context)
            bar.advance(task)
    for note in context.notes:
        say(f"note: {note}")
    typer.echo(f"wrote {len(chosen)} figure entries for {model} into {out}/")

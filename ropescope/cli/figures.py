"""``ropescope figures``: every figure and table of the paper for one model."""

from __future__ import annotations

from pathlib import Path

import typer

from ropescope.cli.common import (
    MODEL_HELP,
    PROMPTS_HELP,
    check_spares_inputs,
    check_writable_parent,
    echo,
    lock_output,
    progress,
    quiet_libraries,
    resume_command,
    say,
    user_path,
    where_it_runs,
)
from ropescope.cli.report import REPORT_OPTION, write_figures_report
from ropescope.errors import Interrupted, RopescopeError
from ropescope.figures.registry import known_ids
from ropescope.model.bundled import DEFAULT_MODEL
from ropescope.prompts import load_prompts


@where_it_runs(without=("rope_scaling",))  # the paper's figures are of the model as trained
def figures_command(
    model: str = typer.Argument(DEFAULT_MODEL, help=MODEL_HELP),
    only: str = typer.Option(None, help=f"Comma list of figure ids (default: all): {known_ids()}."),
    prompts: str = typer.Option("shakespeare", help="Prompt set for the model figures. " + PROMPTS_HELP),
    out: Path = typer.Option(Path("figures"), help="Directory for the figures (files are replaced)."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in OUT, skipping the entries it finished."),
    report_page: bool = REPORT_OPTION,
    model_option: str = typer.Option(None, "--model", hidden=True, help="Old spelling of MODEL."),
    model_options: dict | None = None,
) -> None:
    """Regenerate the paper's figures and tables (PNG, PDF and CSV) for MODEL."""
    from ropescope.figures.context import FigureContext
    from ropescope.figures.registry import select
    from ropescope.figures.runs import PROGRESS, run_figures

    if model_option is not None:
        if model != DEFAULT_MODEL and model != model_option:
            raise RopescopeError(f"give the model once: MODEL is {model!r} but --model is {model_option!r}")
        model = model_option
    options = model_options
    chosen = select(only)
    load_prompts(prompts)  # a bad prompt set fails now, not after the first entries
    out = user_path(out)
    if out.exists() and not out.is_dir():
        raise RopescopeError(f"output path {out} exists and is not a directory")
    check_spares_inputs(out, (model, prompts))
    check_writable_parent(out)
    lock_output(out)
    quiet_libraries()
    context = FigureContext(model, out, prompts, load_options=options)
    finished, timings = [], {}
    try:
        with progress("figures", len(chosen), transient=False) as update:

            def started(figure):
                update(description=f"{figure.id}: {figure.title}")

            def done(figure):
                finished.append(figure.id)
                update(advance=1)

            skipped = run_figures(chosen, context, resume=resume, on_start=started, on_done=done, timings=timings)
    except KeyboardInterrupt:
        state = out / PROGRESS
        where = "no entry was complete yet"
        if state.is_file():
            where = f"{len(finished)} of {len(chosen)} entries are complete in {out}/; "
            where += f"continue with: {resume_command()}"

        raise Interrupted(where) from None
    for note in context.notes:
        say(f"note: {note}")
    if skipped:
        say(f"resumed: kept {len(skipped)} finished entries ({', '.join(skipped)})")
    if timings:
        slowest = sorted(timings.items(), key=lambda item: -item[1])
        say(
            f"time per entry ({sum(timings.values()):.0f} s in all): "
            + ", ".join(f"{figure_id} {seconds:.1f} s" for figure_id, seconds in slowest)
        )
    echo(f"wrote {len(chosen)} figure entries for {model} into {out}/")
    if report_page:
        say("writing report.html (profile and head scan of the same prompts) ...")
        path = write_figures_report(context)
        echo(f"wrote {path}")

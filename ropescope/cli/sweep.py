"""``ropescope sweep``: frequency usage and positional heads across a model's hub revisions
(published training checkpoints), one row per revision, resumable."""

from __future__ import annotations

from pathlib import Path

import typer

from ropescope.cli.common import (
    OVERWRITE_HELP,
    PROMPTS_HELP,
    check_out,
    default_out,
    echo,
    lock_output,
    markdown_table,
    output_directory,
    progress,
    quiet_libraries,
    resume_command,
    say,
    user_path,
    where_it_runs,
)
from ropescope.errors import Interrupted, RopescopeError
from ropescope.files import check_state_dir, claim_state_dir, name_part, release_state_dir, write_table
from ropescope.prompts import load_prompts


@where_it_runs(without=("revision",))  # the revisions are --revisions
def sweep_command(
    model: str = typer.Argument(..., help="Hub id whose revisions are training checkpoints (EleutherAI/pythia-160m)."),
    revisions: str = typer.Option(..., help="Comma list of revisions (branches, tags or commits), in training order."),
    prompts: str = typer.Option("shakespeare", help=PROMPTS_HELP),
    max_tokens: int = typer.Option(None, min=1, help="Cut prompts to this many tokens.", show_default="model context"),
    out: Path = typer.Option(None, help="Output directory.", show_default="runs/MODEL-sweep"),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    resume: bool = typer.Option(False, help="Continue an interrupted sweep, reusing the revisions it finished."),
    model_options: dict | None = None,
) -> None:
    """Profile and head-scan MODEL at each of its revisions: how the frequency bands and the
    positional heads change over training (sweep.csv, sweep.png, each revision's profile)."""
    from ropescope.dynamics.revisions import sweep_revisions
    from ropescope.plots.dynamics import training_figure
    from ropescope.plots.style import save_figure
    from ropescope.profiling.run import check_profile_options

    names = [r.strip() for r in revisions.split(",") if r.strip()]
    if not names:
        raise RopescopeError("--revisions names no revision")
    check_profile_options(max_tokens=max_tokens)
    out = user_path(out or default_out(model, "-sweep"))
    check_out(out, overwrite, inputs=(model, prompts))
    texts = load_prompts(prompts)
    state = out.with_name(out.name + ".resume")
    if resume and not (state / "sweep.json").is_file():
        raise RopescopeError(f"--resume: no saved state of a sweep in {state}")
    lock_output(state)  # one sweep at a time on this state (the output directory locks itself when written)
    check_state_dir(state, adopt=resume)  # resuming: sweep.json is there, and its key is checked below
    if not resume:
        release_state_dir(state)  # a new sweep starts over (ropescope's own state only)
    claim_state_dir(state)
    quiet_libraries()
    try:
        with progress(f"sweeping {len(names)} revisions of {model}", len(names)) as update:
            result = sweep_revisions(
                model,
                names,
                texts,
                max_tokens=max_tokens,
                state=state,
                progress=lambda done, name: update(completed=done, description=f"revision {name} done"),
                **model_options,
            )
    except KeyboardInterrupt:
        kept = len(list(state.glob("*.json"))) - 1 if state.is_dir() else 0
        raise Interrupted(
            f"{max(kept, 0)} of {len(names)} revisions are kept in {state}/; continue with: {resume_command()}"
        ) from None
    table = result.table
    with output_directory(out) as tmp:
        write_table(table, tmp / "sweep", "csv")
        (tmp / "sweep.md").write_text(markdown_table(table), encoding="utf-8")
        (tmp / "profiles").mkdir()
        for index, (name, prof) in enumerate(result.profiles.items(), start=1):
            prof.save(tmp / "profiles" / f"{index:04d}-{name_part(name)}.safetensors")
        numbered = table["step"].notna().all()
        plotted = table.assign(encoding=model, seed=0, step=table["step"] if numbered else range(len(table))).astype(
            {"step": "int64"}
        )
        figure = training_figure(
            plotted,
            title=f"{model}: frequency usage and positional heads across {len(table)} revisions",
            xlabel="training step (from the revision names)" if numbered else "revision (in the order given)",
            tick_labels=None if numbered else list(table["revision"]),
            legend_title="model (one checkpoint per revision)",
        )
        save_figure(figure, tmp / "sweep", formats=("png", "pdf"))
    release_state_dir(state)
    echo(markdown_table(table))
    say(f"wrote {out}/ (sweep.csv, sweep.png, profiles/)")

"""``ropescope profile`` (profile a checkpoint), ``plot`` (redraw a saved profile), ``merge`` (merge
saved profiles) and ``models`` (the bundled models)."""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

import typer

from ropescope.cli.choices import FORMAT_OPTION, OnNonfinite, TableFormat
from ropescope.cli.common import (
    MODEL_HELP,
    OVERWRITE_HELP,
    PROMPTS_HELP,
    check_out,
    check_spares_inputs,
    check_writable_parent,
    default_out,
    echo,
    launched_rank,
    launched_world,
    load,
    model_stem,
    output_directory,
    progress,
    resume_command,
    say,
    user_path,
    where_it_runs,
)
from ropescope.cli.report import REPORT_OPTION
from ropescope.errors import Interrupted, RopescopeError
from ropescope.files import check_state_dir, claim_state_dir, release_state_dir, write_table
from ropescope.model.bundled import DEFAULT_MODEL, model_status
from ropescope.prompts import load_prompts


@where_it_runs
def profile_command(
    model: str = typer.Argument(DEFAULT_MODEL, help=MODEL_HELP),
    prompts: str = typer.Option("shakespeare", help=PROMPTS_HELP),
    max_tokens: int = typer.Option(None, min=1, help="Cut prompts to this many tokens.", show_default="model context"),
    out: Path = typer.Option(None, help="Output directory.", show_default="runs/MODEL"),
    batch_size: int = typer.Option(8, min=1, help="Prompts per forward pass (right-padded)."),
    head_layer: int = typer.Option(0, help="Layer (0-based) of the per-head figure (F4)."),
    include_bos: bool = typer.Option(False, help="Count BOS tokens in the statistics."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    checkpoint_every: int = typer.Option(10, min=0, help="Save resumable state every N batches (0: never)."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from OUT.resume/."),
    on_nonfinite: OnNonfinite = typer.Option(
        "stop", help="NaN/inf activations: stop with an error, or skip those tokens."
    ),
    chunk_tokens: int = typer.Option(
        None, min=1, help="Run long prompts in pieces of this many tokens through the KV cache (bounded memory)."
    ),
    by_position: bool = typer.Option(
        False,
        "--by-position",
        help="Also keep the statistics per token-position bucket (0-15, 16-63, 64-255, ...), in the same pass.",
    ),
    draw_figures: bool = typer.Option(
        True,
        "--figures/--no-figures",
        help="Draw the usage figures (F3, F4, F13 as PNG and PDF: seconds per run). --no-figures suits "
        "scripted runs over many checkpoints; 'ropescope plot OUT' draws them later from the saved profile.",
    ),
    report_page: bool = REPORT_OPTION,
    table_format: TableFormat = FORMAT_OPTION,
    model_options: dict | None = None,
) -> None:
    """Profile q/k/v chunk norms of MODEL on a prompt set; write profile, figures and a summary."""
    from ropescope.model.tokenizer_fingerprint import tokenizer_fingerprint
    from ropescope.plots.position import position_usage_figure
    from ropescope.plots.style import save_figure
    from ropescope.plots.usage import write_profile_figures
    from ropescope.profiling.result import prompt_hash
    from ropescope.profiling.resume import load_state, run_key, save_state
    from ropescope.profiling.run import check_profile_options, profile
    from ropescope.profiling.summary import summary_text
    from ropescope.report import report_data, write_report

    options = model_options
    dtype, on_nonfinite = options["dtype"], OnNonfinite(on_nonfinite).value
    table_format = TableFormat(table_format).value
    check_profile_options(
        max_tokens=max_tokens, batch_size=batch_size, on_nonfinite=on_nonfinite, chunk_tokens=chunk_tokens
    )
    if by_position and (resume or launched_world() > 1):
        raise RopescopeError("--by-position runs in one process and cannot resume; drop --resume or --by-position")
    out = user_path(out or default_out(model))
    check_out(out, overwrite, inputs=(model, prompts), data_parallel=True)
    texts = load_prompts(prompts)
    _init_distributed(options["device"])
    loaded = load(model, **options)
    n_layers = loaded.anatomy.n_layers
    if not 0 <= head_layer < n_layers:
        raise RopescopeError(f"--head-layer {head_layer} is out of range: the model has layers 0..{n_layers - 1}")
    state_path = out.parent / f"{out.name}.resume" / "state.safetensors"
    key = run_key(
        model=model,
        weights=loaded.anatomy.weights_fingerprint,  # the checkpoint behind the name may change
        tokenizer=tokenizer_fingerprint(loaded.tokenizer),  # so may its tokenizer files, or --tokenizer
        prompts=[prompt_hash(t) for t in texts],
        max_tokens=max_tokens,
        batch_size=batch_size,
        include_bos=include_bos,
        dtype=dtype,
        chunk_tokens=chunk_tokens,
    )
    state = None
    if resume:
        if not state_path.is_file():
            raise RopescopeError(f"--resume: no saved state at {state_path}; run without --resume")
        state = load_state(state_path, key)
        check_state_dir(state_path.parent, adopt=True)  # read and checked: ropescope's own
        say(f"resuming after {state['batches_done']} batches from {state_path}")
    distributed = launched_world() > 1
    saver = None
    if checkpoint_every and not distributed and not by_position:
        check_state_dir(state_path.parent)  # never write state into a directory of something else

        def saver(done, stats, longest):
            claim_state_dir(state_path.parent)
            save_state(state_path, key, done, stats, longest)

    try:
        with progress(f"profiling {len(texts)} prompts", len(texts)) as update:
            result = profile(
                loaded,
                loaded.tokenizer,
                texts,
                max_tokens=max_tokens,
                batch_size=batch_size,
                include_bos=include_bos,
                model_id=loaded.name,
                prompt_set=Path(prompts).name if os.sep in prompts else prompts,
                progress=lambda done: update(completed=done),
                checkpoint=saver,
                checkpoint_every=max(1, checkpoint_every),
                resume=state,
                on_nonfinite=on_nonfinite,
                chunk_tokens=chunk_tokens,
                by_position=by_position,
            )
    except KeyboardInterrupt:
        where = f"partial state is in {state_path.parent}/; continue with: {resume_command()}"
        raise Interrupted(where if state_path.is_file() else "no state was saved yet; no output was written") from None
    if launched_rank() != 0:
        return  # data parallel: rank 0 writes the merged profile
    text = summary_text(result)
    with output_directory(out) as tmp:
        result.save(tmp / "profile.safetensors")
        write_table(result.frame(), tmp / "chunk_norms", table_format)
        write_table(result.massive_values(), tmp / "massive_values", table_format)
        (tmp / "summary.txt").write_text(text, encoding="utf-8")
        if draw_figures:
            write_profile_figures(result, tmp, head_layer=head_layer)
        if by_position:
            write_table(result.frame_by_position(), tmp / "chunk_norms_by_position", table_format)
            save_figure(position_usage_figure(result), tmp / f"position_usage_{model_stem(model)}")
        if report_page:  # from the profile in memory
            write_report(report_data(result), tmp / "report.html")
    release_state_dir(state_path.parent)  # ropescope's own only: an input of that name stays
    echo(text)
    extra = ", report.html" if report_page else ""
    tables = f"chunk_norms.{table_format}, massive_values.{table_format}"
    drawn = ", figures" if draw_figures else ""
    echo(f"wrote {out}/ (profile.safetensors, {tables}, summary.txt{drawn}{extra})")


def _init_distributed(device: str | None) -> None:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1), join the process group."""
    import torch

    if launched_world() > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device and device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        # left at exit, gloo's threads abort the process ("terminate called without an active
        # exception"): every rank leaves the group before the interpreter ends, whatever the exit
        atexit.register(_leave_distributed)


def _leave_distributed() -> None:
    """Leave the process group together: every rank waits for the others (rank 0 writes the run
    folder after the merge) before the group goes, so no rank tears its connections down while a
    peer still holds them (gloo aborted the early rank then)."""
    import torch

    if torch.distributed.is_initialized():
        try:
            torch.distributed.barrier()
        except Exception:  # noqa: BLE001 - a peer already gone (it failed): leave all the same
            pass
        torch.distributed.destroy_process_group()


def plot_command(
    run: Path = typer.Argument(..., help="Run directory (or profile.safetensors) written by 'ropescope profile'."),
    out: Path = typer.Option(None, help="Directory for the figures.", show_default="the run directory"),
    head_layer: int = typer.Option(0, help="Layer (0-based) of the per-head figure (F4)."),
) -> None:
    """Redraw the figures of a saved profile."""
    from ropescope.plots.usage import write_profile_figures
    from ropescope.profiling.result import load_profile

    run, out = user_path(run), (user_path(out) if out is not None else None)
    result = load_profile(run)
    if not 0 <= head_layer < result.n_layers:
        raise RopescopeError(
            f"--head-layer {head_layer} is out of range: the model has layers 0..{result.n_layers - 1}"
        )
    target = out or (run if run.is_dir() else run.parent)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".figures-") as tmp:
        paths = write_profile_figures(result, tmp, head_layer=head_layer)
        for path in paths:
            os.replace(path, target / path.name)
    echo(f"wrote {len(paths)} figure files to {target}/")


def merge_command(
    profiles: list[Path] = typer.Argument(..., help="Saved profiles (files or run directories) of one model."),
    out: Path = typer.Option(..., help="The merged profile file (.safetensors)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Merge saved profiles of the same model (e.g. shards profiled separately) into one."""
    from ropescope.profiling.result import load_profile

    profiles, out = [user_path(p) for p in profiles], user_path(out)
    if len(profiles) < 2:
        raise RopescopeError(f"merge needs at least two profiles, got {len(profiles)}")
    # a run directory is read through its profile.safetensors: that file is an input too
    check_spares_inputs(out, [*profiles, *(p / "profile.safetensors" for p in profiles if p.is_dir())])
    if out.exists() and not overwrite:
        raise RopescopeError(f"output file {out} already exists; pass --overwrite to replace it")
    if out.is_dir():
        raise RopescopeError(f"output path {out} is a directory; name a .safetensors file")
    check_writable_parent(out)
    merged = None
    for path in profiles:
        loaded = load_profile(path)
        try:
            merged = loaded if merged is None else merged.merge(loaded)
        except RopescopeError as exc:
            raise RopescopeError(f"{path}: {exc}") from None
    merged.save(out)
    echo(f"merged {len(profiles)} profiles ({merged.n_tokens} tokens) into {out}")


def models_command() -> None:
    """List the bundled models and whether they are installed."""
    for row in model_status():
        state = "installed" if row["installed"] else f"not installed ({row['install']})"
        echo(f"{row['name']:<14} {state:<12}  {row['description']}")


def families_command(
    markdown_table: bool = typer.Option(
        False, "--markdown", help="Print the table as Markdown (as the docs' families page shows it)."
    ),
    only: str = typer.Option(None, help="Comma list of model types to check, e.g. llama,gemma2 (default: all)."),
) -> None:
    """Check every decoder-only RoPE family of the installed transformers on a tiny random model.

    Prints one row per family: pair layout, rotary dims per head, RoPE scaling type, sliding window,
    and whether profile, heads and p-RoPE work ("yes") or why not. Takes about 20 s.

    Examples:

        ropescope families

        ropescope families --only llama,gemma2,phi3 --markdown
    """
    import transformers

    from ropescope.survey import markdown, survey

    transformers.utils.logging.set_verbosity_error()
    families = [f.strip() for f in only.split(",") if f.strip()] if only else None
    with progress("checking families", len(families) if families else 0) as update:
        rows = survey(families, progress=lambda name: update(description=f"checking {name}", advance=1))
    if markdown_table:
        echo(markdown(rows), nl=False)
        return
    width = max(len(r.family) for r in rows)
    echo(
        f"{'family':<{width}}  {'layout':<11}  {'rotary':<7}  {'scaling':<13}  {'window':<6}  profile / heads / p-RoPE"
    )
    for r in rows:
        checks = " / ".join(v if v == "yes" else f"no ({v})" for v in (r.profile, r.heads, r.prope))
        shape = f"{r.layout:<11}  {r.rotary_fraction:<7}  {r.scaling:<13}  {r.sliding_window:<6}"
        echo(f"{r.family:<{width}}  {shape}  {checks}" + (f"  [{r.note}]" if r.note else ""))
    supported = sum(r.supported for r in rows)
    echo(f"{supported} of {len(rows)} RoPE families (transformers {transformers.__version__}) fully supported")

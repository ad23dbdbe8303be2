"""The ``ropescope`` command line: profile a checkpoint, redraw a saved profile, list bundled models.

Every error a user can cause is printed as one line (``error: ...``) with a non-zero exit status;
set ``ROPESCOPE_DEBUG=1`` to see the traceback of an unexpected one. Output directories appear
only when complete: they are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")  # the command line draws to files only
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import typer  # noqa: E402

from ropescope.cli_support import (  # noqa: E402
    check_out,
    check_writable_parent,
    output_directory,
    quiet_libraries,
    say,
    stderr_console,
)
from ropescope.errors import RopescopeError  # noqa: E402
from ropescope.models import DEFAULT_MODEL, DTYPES  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How a pretrained RoPE language model uses each rotary frequency.",
)


@app.command()
def profile(
    model: str = typer.Argument(DEFAULT_MODEL, help="Bundled model name, HF id or directory, or .gguf path."),
    prompts: str = typer.Option("shakespeare", help="Built-in prompt set name or a prompt file (.txt, .jsonl)."),
    max_tokens: int = typer.Option(None, help="Cut prompts to this many tokens [default: model context]."),
    out: Path = typer.Option(None, help="Output directory [default: runs/MODEL]."),
    batch_size: int = typer.Option(8, help="Prompts per forward pass (right-padded)."),
    dtype: str = typer.Option("float32", help=f"Model dtype: {', '.join(DTYPES)}."),
    device: str = typer.Option(None, help="Torch device, e.g. cpu, cuda, cuda:1."),
    device_map: str = typer.Option(None, help="'auto' to spread a large model over devices (accelerate)."),
    head_layer: int = typer.Option(0, help="Layer (0-based) of the per-head figure (F4)."),
    include_bos: bool = typer.Option(False, help="Count BOS tokens in the statistics."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    trust_remote_code: bool = typer.Option(False, help="Allow a checkpoint's own Python code to run."),
    checkpoint_every: int = typer.Option(10, help="Save resumable state every N batches (0: never)."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from OUT.resume/."),
    on_nonfinite: str = typer.Option("stop", help="NaN/inf activations: 'stop' with an error, or 'skip' those tokens."),
    chunk_tokens: int = typer.Option(
        None, help="Run long prompts in pieces of this many tokens through the KV cache (bounded memory)."
    ),
) -> None:
    """Profile q/k/v chunk norms of MODEL on a prompt set; write profile, figures and a summary."""
    from rich.progress import Progress

    import ropescope
    from ropescope.plots import write_profile_figures
    from ropescope.summary import summary_text

    if max_tokens is not None and max_tokens <= 0:
        raise RopescopeError(f"--max-tokens must be a positive number of tokens, got {max_tokens}")
    if batch_size <= 0:
        raise RopescopeError(f"--batch-size must be positive, got {batch_size}")
    if on_nonfinite not in ("stop", "skip"):
        raise RopescopeError(f"--on-nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    if chunk_tokens is not None and chunk_tokens <= 0:
        raise RopescopeError(f"--chunk-tokens must be a positive number of tokens, got {chunk_tokens}")
    if checkpoint_every < 0:
        raise RopescopeError(f"--checkpoint-every must be zero or more, got {checkpoint_every}")
    out = out or Path("runs") / Path(model).name.removesuffix(".gguf")
    check_out(out, overwrite)
    texts = ropescope.load_prompts(prompts)
    quiet_libraries()
    _init_distributed(device)
    say(f"loading {model} ...")
    loaded, tokenizer = ropescope.load_model(
        model, dtype=dtype, device=device, device_map=device_map, trust_remote_code=trust_remote_code
    )
    n_layers = ropescope.read_geometry(loaded).n_layers
    if not 0 <= head_layer < n_layers:
        raise RopescopeError(f"--head-layer {head_layer} is out of range: the model has layers 0..{n_layers - 1}")
    from ropescope.profile import prompt_hash
    from ropescope.resume import load_state, run_key, save_state

    state_path = out.parent / f"{out.name}.resume" / "state.safetensors"
    key = run_key(
        model=model,
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
        say(f"resuming after {state['batches_done']} batches from {state_path}")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    saver = None
    if checkpoint_every and not distributed:

        def saver(done, stats, longest):
            save_state(state_path, key, done, stats, longest)

    try:
        with Progress(transient=True, console=stderr_console()) as bar:
            task = bar.add_task(f"profiling {len(texts)} prompts", total=len(texts))
            result = ropescope.profile(
                loaded,
                tokenizer,
                texts,
                max_tokens=max_tokens,
                batch_size=batch_size,
                include_bos=include_bos,
                model_id=model,
                prompt_set=Path(prompts).name if os.sep in prompts else prompts,
                progress=lambda done: bar.update(task, completed=done),
                checkpoint=saver,
                checkpoint_every=max(1, checkpoint_every),
                resume=state,
                on_nonfinite=on_nonfinite,
                chunk_tokens=chunk_tokens,
            )
    except KeyboardInterrupt:
        where = f"partial state is in {state_path.parent}/; resume with the same command plus --resume"
        raise RopescopeError(f"interrupted; {where if state_path.is_file() else 'no state was saved yet'}") from None
    if int(os.environ.get("RANK", "0")) != 0:
        return  # data parallel: rank 0 writes the merged profile
    text = summary_text(result)
    with output_directory(out, overwrite) as tmp:
        result.save(tmp / "profile.safetensors")
        result.frame().to_csv(tmp / "chunk_norms.csv", index=False)
        (tmp / "summary.txt").write_text(text, encoding="utf-8")
        write_profile_figures(result, tmp, head_layer=head_layer)
    shutil.rmtree(state_path.parent, ignore_errors=True)
    typer.echo(text)
    typer.echo(f"wrote {out}/ (profile.safetensors, chunk_norms.csv, summary.txt, figures)")


def _init_distributed(device: str | None) -> None:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1), join the process group."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device and device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)


@app.command()
def plot(
    run: Path = typer.Argument(..., help="Run directory (or profile.safetensors) written by 'ropescope profile'."),
    out: Path = typer.Option(None, help="Directory for the figures [default: the run directory]."),
    head_layer: int = typer.Option(0, help="Layer (0-based) of the per-head figure (F4)."),
) -> None:
    """Redraw the figures of a saved profile."""
    import ropescope
    from ropescope.plots import write_profile_figures

    result = ropescope.load_profile(run)
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
    typer.echo(f"wrote {len(paths)} figure files to {target}/")


@app.command()
def merge(
    profiles: list[Path] = typer.Argument(..., help="Saved profiles (files or run directories) of one model."),
    out: Path = typer.Option(..., help="The merged profile file (.safetensors)."),
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
) -> None:
    """Merge saved profiles of the same model (e.g. shards profiled separately) into one."""
    import ropescope

    if len(profiles) < 2:
        raise RopescopeError(f"merge needs at least two profiles, got {len(profiles)}")
    if out.exists() and not overwrite:
        raise RopescopeError(f"output file {out} already exists; pass --overwrite to replace it")
    if out.is_dir():
        raise RopescopeError(f"output path {out} is a directory; name a .safetensors file")
    check_writable_parent(out)
    merged = None
    for path in profiles:
        loaded = ropescope.load_profile(path)
        try:
            merged = loaded if merged is None else merged.merge(loaded)
        except RopescopeError as exc:
            raise RopescopeError(f"{path}: {exc}") from None
    merged.save(out)
    typer.echo(f"merged {len(profiles)} profiles ({merged.n_tokens} tokens) into {out}")


@app.command()
def models() -> None:
    """List the bundled models and whether they are installed."""
    from ropescope.models import model_status

    for row in model_status():
        state = "installed" if row["installed"] else f"not installed ({row['install']})"
        typer.echo(f"{row['name']:<14} {state:<12}  {row['description']}")


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"warning: {message}")


from ropescope.cli_figures import figures_command  # noqa: E402
from ropescope.cli_heads import head_command, heads_command  # noqa: E402
from ropescope.cli_prope import prope_command, train_prope_command  # noqa: E402

app.command("heads")(heads_command)
app.command("head")(head_command)
app.command("prope")(prope_command)
app.command("train-prope")(train_prope_command)
app.command("figures")(figures_command)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _exit_on_command_line_error(exc: Exception) -> None:
    """Exit for click's own outcomes (typer vendors click, so matched by module): ``--help`` and
    friends exit with their code; a bad option or value is one line naming it, exit status 2."""
    if not type(exc).__module__.endswith("click.exceptions"):
        return
    name = type(exc).__name__
    if name == "Exit":
        sys.exit(exc.exit_code)
    if name == "Abort":
        say("error: aborted")
        sys.exit(130)
    if hasattr(exc, "format_message"):
        message = " ".join(exc.format_message().split())
        say(f"error: {message} (see --help)")
        sys.exit(getattr(exc, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every failure into one line and an exit status."""
    signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops as cleanly as Ctrl-C
    warnings.showwarning = _warn_one_line
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app(args=argv, standalone_mode=False)
    except RopescopeError as exc:
        say(f"error: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("error: interrupted; no output was written")
        sys.exit(130)
    except OSError as exc:  # disk full, permission denied, ...: the output was not written
        where = f" ({exc.filename})" if exc.filename else ""
        say(f"error: cannot write or read a file{where}: {exc.strerror or exc}; no output was written")
        sys.exit(1)
    except Exception as exc:  # an unexpected failure still gets one line, unless debugging
        _exit_on_command_line_error(exc)
        if os.environ.get("ROPESCOPE_DEBUG"):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        say(f"error: unexpected {type(exc).__name__}: {detail} (set ROPESCOPE_DEBUG=1 for the traceback)")
        sys.exit(1)

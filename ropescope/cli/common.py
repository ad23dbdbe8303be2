"""The path every command shares: check options and paths -> load the model -> show progress ->
write the output directory atomically; and the one-line messages on standard error."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ropescope.cli.choices import DType
from ropescope.errors import RopescopeError, printable
from ropescope.files import atomic_directory, name_part, output_lock
from ropescope.progress import LineProgress
from ropescope.prompts import builtin_sets

if TYPE_CHECKING:
    from ropescope.model.loading import LoadedModel

output_directory = atomic_directory  # the run directory appears only when complete
HELD = contextlib.ExitStack()  # locks a command holds until it ends (released by cli.app.main)


COMMAND_LINE: list[str] = []  # the arguments of the running command (set by cli.app.main)


def resume_command() -> str:
    """The exact command that continues the running one: its own arguments with ``--resume`` added,
    quoted for a POSIX shell."""
    args = [a for a in COMMAND_LINE if a not in ("--no-resume", "--resume")]
    return shlex.join(["ropescope", *args, "--resume"])


def lock_output(out: Path, *, data_parallel: bool = False) -> None:
    """Lock ``out`` against a concurrent run until the command ends (:func:`ropescope.files.output_lock`);
    a command that is not ``data_parallel`` refuses to run under a launcher (:func:`refuse_launcher`)."""
    if not data_parallel:
        refuse_launcher()
    HELD.enter_context(output_lock(out))


def refuse_launcher() -> None:
    """Refuse, in one line, a one-process command started by torchrun or accelerate launch: every
    rank would compute the whole run and race to write one output."""
    if launched_world() > 1:
        raise RopescopeError(
            "this command runs in one process (only 'ropescope profile' is data-parallel): run it without "
            "torchrun or accelerate launch"
        )


MODEL_HELP = (
    "Bundled model name, Hugging Face hub id (downloaded once, then cached), checkpoint directory, or .gguf file."
)
PROMPTS_HELP = (
    f"Built-in prompt set ({', '.join(builtin_sets())}) or a prompt file (.txt: one prompt per line or "
    "blank-line separated; .jsonl: a text field)."
)
OVERWRITE_HELP = "Replace an existing output directory."

# Where the model runs: the same options on every command that loads one (see :func:`where_it_runs`).
LOAD_PARAMETERS = {
    "dtype": (DType, typer.Option("float32", help="Model dtype.")),
    "device": (str, typer.Option(None, help="Torch device, e.g. cpu, cuda, cuda:1.")),
    "device_map": (str, typer.Option(None, help="'auto' to spread a large model over devices (accelerate).")),
    "offline": (
        bool,
        typer.Option(False, help="Use the local Hugging Face cache only, never download (or HF_HUB_OFFLINE=1)."),
    ),
    "revision": (
        str,
        typer.Option(None, help="Hub ids: the branch, tag or commit to load (as from_pretrained; default: main)."),
    ),
    "rope_scaling": (
        str,
        typer.Option(
            None,
            help="Extend the context at inference: TYPE:FACTOR with TYPE linear, yarn or llama3 (e.g. yarn:4), "
            "as a checkpoint configured with that scaling computes; LAYER_TYPE=TYPE:FACTOR scales one layer "
            "type only (e.g. full_attention=linear:8, as Gemma 3 4B-27B ship).",
        ),
    ),
    "trust_remote_code": (bool, typer.Option(False, help="Allow a checkpoint's own Python code to run.")),
    "tokenizer": (
        str,
        typer.Option(None, help="Tokenizer to use instead of the checkpoint's own (model name, directory or hub id)."),
    ),
    "allow_missing_weights": (
        bool,
        typer.Option(False, help="Load a checkpoint whose tensors do not cover the model (the rest stays random)."),
    ),
}


def where_it_runs(command: Callable | None = None, *, without: tuple[str, ...] = ()) -> Callable:
    """Give ``command`` the options of :data:`LOAD_PARAMETERS` (less those named in ``without``)
    and hand them to it gathered as one ``model_options`` keyword: the keyword arguments of
    :func:`~ropescope.model.load_model`. Used as ``@where_it_runs`` or ``@where_it_runs(without=...)``."""
    if command is None:
        return functools.partial(where_it_runs, without=without)
    parameters = {name: value for name, value in LOAD_PARAMETERS.items() if name not in without}
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "model_options"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, (kind, option) in parameters.items()
    ]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        chosen = {name: kwargs.pop(name) for name in parameters}
        chosen["dtype"] = DType(chosen["dtype"]).value
        return command(*args, model_options=chosen, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's own
    return wrapper


def say(message: str) -> None:
    """Write ``message`` (made :func:`printable`) to standard error."""
    typer.echo(printable(message), err=True)


def echo(message: str, nl: bool = True) -> None:
    """Write ``message`` (made :func:`printable`) to standard output: a command's result (``nl``:
    end it with a newline)."""
    typer.echo(printable(message), nl=nl)


def model_stem(model: str) -> str:
    """A model name as a file-name part (:func:`ropescope.files.name_part`)."""
    return name_part(model)


def default_out(model: str, suffix: str = "") -> Path:
    """``runs/MODEL{suffix}``, the default output directory of a command (its name cut to 100
    characters, so a long model path never fails only when the results are written)."""
    return Path("runs") / f"{model_stem(model)[:100]}{suffix}"


def user_path(path: Path | str) -> Path:
    """A path as the user meant it, decided once before any check and used for every step after:
    ``~`` expanded (also in ``--out=~/x``, where the shell leaves it alone)."""
    return Path(os.path.expanduser(str(path)))


def check_spares_inputs(out: Path, inputs) -> None:
    """Refuse an output that is one of the command's own inputs or holds one (a run being compared,
    the checkpoint being profiled, its parent folder): writing it would delete what is being read.
    ``inputs`` are paths or names; names that are no local path (hub ids, bundled models) are skipped.
    Symbolic links are followed, so another name for the same place is refused too."""
    target = Path(os.path.realpath(out))
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        source = Path(os.path.realpath(given))
        if source == target or target in source.parents:
            raise RopescopeError(
                f"output {out} {'is' if source == target else 'holds'} the input {given}; "
                "writing it would delete what is being read, name another --out"
            )


def launched_rank() -> int:
    """This process's rank under ``torchrun`` or ``accelerate launch`` (``RANK``); 0 alone, also
    where a stray ``RANK`` is set without a ``WORLD_SIZE`` above 1."""
    if launched_world() <= 1:
        return 0
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def launched_world() -> int:
    """How many processes a launcher started (``WORLD_SIZE``; 1 alone)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def check_out(out: Path, overwrite: bool, inputs=(), *, data_parallel: bool = False) -> None:
    """Refuse, before any work, an output directory that exists (without ``overwrite``), that is a
    file, that holds the current directory or one of the command's ``inputs``
    (:func:`check_spares_inputs`), or whose parent cannot hold it. Under a launcher every rank
    makes these checks (a refusal ends every rank at once, not after the launcher notices), but
    only rank 0, the one that writes, takes the output's lock; the other ranks compute and hand
    their part to rank 0 (a lock per rank made the second rank refuse the first's)."""
    if not data_parallel:
        refuse_launcher()
    here, target = Path(os.path.abspath(Path.cwd())), Path(os.path.abspath(out))
    if target == here or target in here.parents:
        raise RopescopeError(f"output directory {out} holds the current directory; it cannot be replaced, name another")
    check_spares_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise RopescopeError(f"output path {out} exists and is not a directory")
    if out.exists() and not overwrite:
        raise RopescopeError(f"output directory {out} already exists; pass --overwrite to replace it")
    check_writable_parent(out)
    if launched_rank() == 0:
        lock_output(out, data_parallel=data_parallel)


def check_writable_parent(out: Path) -> None:
    """Refuse an output path under a file or under a directory this user cannot write to."""
    parent = out.expanduser().absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RopescopeError(f"output path {out} is inside {parent}, which is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RopescopeError(f"output path {out}: directory {parent} is not writable")


def quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load(model: str, **options) -> LoadedModel:
    """Load ``model`` (options of :func:`~ropescope.model.load_model`) with a line saying so."""
    from ropescope.model.loading import load_model

    quiet_libraries()
    say(f"loading {model} ...")
    return load_model(model, **options)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress(description: str, total: int, transient: bool = True) -> Iterator[Callable]:
    """Progress on standard error; yields ``update(completed=None, advance=None, description=None)``.

    A terminal gets a live bar; anything else (a log file, CI, ``nohup``) gets plain lines at least
    every ``ROPESCOPE_PROGRESS_EVERY`` seconds (default 10; :class:`~ropescope.progress.LineProgress`)."""
    from rich.progress import Progress

    if launched_rank() != 0:  # under a launcher rank 0 reports; the others work silently
        yield lambda **fields: None
        return
    if not sys.stderr.isatty():
        with LineProgress(description, total, write=say) as lines:
            yield lines.update
        return
    with Progress(transient=transient, console=stderr_console()) as bar:
        task = bar.add_task(description, total=total)

        def update(**fields) -> None:
            bar.update(task, **{k: v for k, v in fields.items() if v is not None})

        yield update


def markdown_table(frame) -> str:
    """A plain markdown table of a DataFrame (no extra dependency)."""

    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"

"""Helpers shared by the command-line modules: messages, quiet libraries, atomic output directories."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import typer

from ropescope.errors import RopescopeError


def say(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def output_directory(out: Path, overwrite: bool):
    """Yield a temporary directory that becomes ``out`` only if the block finishes."""
    out = out.expanduser()
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        yield tmp
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output directory that exists (without ``overwrite``), that is a
    file, or whose parent cannot hold it."""
    if out.exists() and not out.is_dir():
        raise RopescopeError(f"output path {out} exists and is not a directory")
    if out.exists() and not overwrite:
        raise RopescopeError(f"output directory {out} already exists; pass --overwrite to replace it")
    check_writable_parent(out)


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


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)

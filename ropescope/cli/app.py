"""The ``ropescope`` command line: the typer app, its commands, and one-line error handling.

Every error a user can cause is printed as one line (``error: ...``) with a non-zero exit status;
set ``ROPESCOPE_DEBUG=1`` to see the traceback of an unexpected one. Output directories appear
only when complete: they are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

os.environ.setdefault("MPLBACKEND", "Agg")  # the command line draws to files only
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import typer  # noqa: E402

from ropescope.cli.common import COMMAND_LINE, HELD, echo, printable, say  # noqa: E402
from ropescope.cli.compare import compare_command  # noqa: E402
from ropescope.cli.examples import epilog  # noqa: E402
from ropescope.cli.figures import figures_command  # noqa: E402
from ropescope.cli.heads import head_command, heads_command  # noqa: E402
from ropescope.cli.profile import (  # noqa: E402
    families_command,
    merge_command,
    models_command,
    plot_command,
    profile_command,
)
from ropescope.cli.prope import prope_command, train_prope_command  # noqa: E402
from ropescope.cli.report import report_command  # noqa: E402
from ropescope.cli.sweep import sweep_command  # noqa: E402
from ropescope.errors import Interrupted, RopescopeError  # noqa: E402

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How a pretrained RoPE language model uses each rotary frequency. Start with `ropescope profile` "
    "(the bundled Gemma 3 270M on Shakespeare prompts); every command's --help ends with examples.",
)


def _flags_show_no_type() -> None:
    """typer's help lists a ``<bool>`` type beside on/off flags as if they took a value; show none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False) else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flags_show_no_type()


def _show_version(value: bool) -> None:
    if value:
        from ropescope.version import __version__

        echo(f"ropescope {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """Options of ``ropescope`` itself (the app's help text is set above)."""


class _Printable(logging.Filter):
    """Library log records (the hub client's retry lines name the URL, credentials included) pass
    through :func:`printable` before any handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


def _redact_library_logs() -> None:
    for name in ("huggingface_hub", "transformers", "urllib3", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Printable) for f in logger.filters):
            logger.addFilter(_Printable())
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.ERROR)  # one error line, not five retries


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"warning: {message}")


COMMANDS = {
    "profile": profile_command,
    "plot": plot_command,
    "merge": merge_command,
    "models": models_command,
    "families": families_command,
    "heads": heads_command,
    "head": head_command,
    "prope": prope_command,
    "train-prope": train_prope_command,
    "figures": figures_command,
    "report": report_command,
    "compare": compare_command,
    "sweep": sweep_command,
}
for _name, _command in COMMANDS.items():
    app.command(_name, epilog=epilog(_name))(_command)


_STOPPED_BY: dict[str, int] = {}


def _terminate(signum, frame) -> None:
    """SIGINT and SIGTERM stop the command the same clean way (temporary files removed); the exit
    status says which: 130 for Ctrl-C, 143 for SIGTERM (a scheduler's preemption)."""
    _STOPPED_BY["signal"] = signum
    raise KeyboardInterrupt


def _stop(message: str) -> None:
    signum = _STOPPED_BY.get("signal", signal.SIGINT)
    say(f"error: interrupted by {signal.Signals(signum).name}; {message}")
    # CPython remembers a KeyboardInterrupt that escaped any ``exec`` of a string (dataclasses and
    # namedtuples build their methods that way, so a signal landing inside an import trips it) and,
    # under ``python -m``, re-kills itself with SIGINT at exit whatever status we asked for. A
    # successful string ``exec`` clears that flag, so the exit status below is the one that stands.
    exec("None")
    sys.exit(128 + int(signum))


def _exit_on_command_line_error(exc: Exception) -> None:
    """Exit for click's own outcomes (typer vendors click, so matched by module): ``--help`` and
    friends exit with their code; a bad option or value is one line naming it, exit status 2."""
    if not type(exc).__module__.endswith("click.exceptions"):
        return
    name = type(exc).__name__
    if name == "Exit":
        sys.exit(exc.exit_code)
    if name == "Abort":
        _stop("no output was written")
    if name == "NoArgsIsHelpError":  # plain ``ropescope``: the help was printed, nothing went wrong
        sys.exit(0)
    if hasattr(exc, "format_message"):
        say(f"error: {one_line(exc.format_message(), exc)} (see --help)")
        sys.exit(getattr(exc, "exit_code", 2))


def one_line(message: str, exc: BaseException) -> str:
    """``message`` on one line; the exception's kind where the message is empty."""
    return " ".join(str(message).split()) or f"{type(exc).__name__} (no message)"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every failure into one line and an exit status."""
    _STOPPED_BY.clear()
    COMMAND_LINE[:] = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops as cleanly as Ctrl-C
    signal.signal(signal.SIGINT, _terminate)
    warnings.showwarning = _warn_one_line
    _redact_library_logs()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        with HELD:  # output locks are released however the command ends
            code = app(args=argv, standalone_mode=False)
    except Interrupted as exc:
        _stop(str(exc))
    except RopescopeError as exc:
        say(f"error: {one_line(str(exc), exc)}")
        sys.exit(1)
    except KeyboardInterrupt:
        _stop("no output was written")
    except OSError as exc:  # disk full, permission denied, ...: the output was not written
        where = f" ({exc.filename})" if exc.filename else ""
        say(f"error: cannot write or read a file{where}: {exc.strerror or exc}; no output was written")
        sys.exit(1)
    except Exception as exc:  # an unexpected failure still gets one line, unless debugging
        _exit_on_command_line_error(exc)
        if os.environ.get("ROPESCOPE_DEBUG"):
            raise
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
        say(f"error: unexpected {type(exc).__name__}: {detail} (set ROPESCOPE_DEBUG=1 for the traceback)")
        sys.exit(1)
    if isinstance(code, int) and code:
        if code == 130:  # typer turns a KeyboardInterrupt inside a command into this exit code
            _stop("no output was written")
        sys.exit(code)

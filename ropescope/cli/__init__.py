"""Command line: ``ropescope`` (the typer app in :mod:`~ropescope.cli.app`), one module per command
group over the shared check -> load -> progress -> write path of :mod:`~ropescope.cli.common`.

:func:`main` handles Ctrl-C and SIGTERM from its first instruction: the app's import happens after
(typer and the command modules; torch and transformers only when a command runs, under the app's own
handler), so a command stopped while it is still starting ends with one line and exit status 130 or
143, not a traceback.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ropescope`` command (see :func:`ropescope.cli.app.main`)."""
    stopped = {}

    def starting(signum, frame):
        stopped["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, starting)
    signal.signal(signal.SIGTERM, starting)
    try:
        from ropescope.cli.app import main as run
    except KeyboardInterrupt:
        signum = stopped.get("signal", signal.SIGINT)
        sys.stderr.write(f"error: interrupted by {signal.Signals(signum).name} while starting; no output was written\n")
        exec("None")  # clears CPython's "unhandled KeyboardInterrupt" flag (see ropescope.cli.app._stop)
        sys.exit(128 + int(signum))
    run(argv)


__all__ = ["main"]  # the typer app itself: ropescope.cli.app.app

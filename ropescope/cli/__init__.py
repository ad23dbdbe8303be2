"""Command line: ``ropescope`` (the typer app in :mod:`~ropescope.cli.app`), one module per command
group over the shared check -> load -> progress -> write path of :mod:`~ropescope.cli.common`."""

from ropescope.cli.app import app, main

__all__ = ["app", "main"]

"""Progress of long work where a live bar cannot be drawn, and the bar the Python API draws on request.

:class:`LineProgress` is for a log file, a batch job, CI or ``nohup``: one plain line on standard
error when the work starts, then at least every ``every`` seconds (from a timer thread, so a single
slow step still reports) with done/total, rate and time left, and one when it ends. The command line
uses it whenever standard error is not a terminal (``ROPESCOPE_PROGRESS_EVERY`` sets the interval,
default 10 s). :func:`auto_bar` is what ``progress=True`` gives in the Python API: a notebook widget
in Jupyter, a text bar in a terminal (``tqdm.auto``), these lines otherwise. The API is quiet unless
asked.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from ropescope.errors import RopescopeError

DEFAULT_EVERY = 10.0  # seconds between lines when nothing else says


def line_interval() -> float:
    """Seconds between progress lines: ``ROPESCOPE_PROGRESS_EVERY`` or :data:`DEFAULT_EVERY`."""
    try:
        return max(0.01, float(os.environ.get("ROPESCOPE_PROGRESS_EVERY", DEFAULT_EVERY)))
    except ValueError:
        return DEFAULT_EVERY


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LineProgress:
    """Plain progress lines (see the module docstring); ``update`` takes the same fields as the
    terminal bar: ``completed`` (items done), ``advance`` (items just done), ``description``."""

    def __init__(self, description: str, total: int, write: Callable[[str], None] | None = None, every=None):
        self.description, self.total = description, int(total or 0)
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.every = every if every is not None else line_interval()
        self.done, self.began = 0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def start(self) -> LineProgress:
        """Start the timer (no line yet: a run refused at once prints only its error)."""
        self._thread.start()
        return self

    def close(self, ok: bool = True) -> None:
        """Stop the timer; the closing line only when the work finished (``ok``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if ok:
            self.done = max(self.done, self.total)  # finished normally: everything was done
            self.write(f"{self.description}: done, {self._count()} in {_duration(time.monotonic() - self.began)}")

    def __enter__(self) -> LineProgress:
        return self.start()

    def __exit__(self, kind, value, traceback) -> None:
        self.close(ok=kind is None)

    def update(self, completed=None, advance=None, description=None) -> None:
        if description is not None:
            self.description = description
        if completed is not None:
            self.done = int(completed)
        if advance:
            self.done += int(advance)

    def line(self) -> str:
        """The current line: items done of the total, rate and time left (once something is done)."""
        elapsed = time.monotonic() - self.began
        text = f"{self.description}: {self._count()}, {_duration(elapsed)} elapsed"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            text += f", {rate:.3g}/s"
            if self.total and self.done < self.total:
                text += f", about {_duration((self.total - self.done) / rate)} left"
        return text

    def _count(self) -> str:
        if not self.total:
            return f"{self.done} done"
        return f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)"

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.write(self.line())


class _TqdmBar:
    """``tqdm.auto`` behind the same ``update`` fields."""

    def __init__(self, description: str, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=description, leave=True)

    def update(self, completed=None, advance=None, description=None) -> None:
        if description is not None:
            self.bar.set_description(description)
        if completed is not None:
            self.bar.update(int(completed) - self.bar.n)
        if advance:
            self.bar.update(int(advance))

    def close(self, ok: bool = True) -> None:
        self.bar.close()


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def auto_bar(description: str, total: int):
    """The bar ``progress=True`` draws: a notebook widget in Jupyter, a text bar on a terminal,
    :class:`LineProgress` lines otherwise. Has ``update(completed=, advance=, description=)`` and
    ``close()``."""
    if _in_notebook() or sys.stderr.isatty():
        try:
            return _TqdmBar(description, total)
        except ImportError:  # pragma: no cover - tqdm comes with transformers
            pass
    return LineProgress(description, total).start()


def as_callback(progress, description: str, total: int):
    """``(callback, close)`` for an API ``progress`` argument: ``None``/``False`` -> quiet, ``True``
    -> :func:`auto_bar` (the callback sets the items done), a callable -> itself. ``close(ok)``
    ends the bar (``ok=False`` after a failure: no closing line)."""
    if progress is None or progress is False:
        return None, lambda ok=True: None
    if progress is True:
        bar = auto_bar(description, total)
        return (lambda done: bar.update(completed=done)), bar.close
    if not callable(progress):
        raise RopescopeError(f"progress must be True, False, None or a callable, got {type(progress).__name__}")
    return progress, lambda ok=True: None


@contextlib.contextmanager
def reporting(progress, description: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """:func:`as_callback` as a context manager: yields the callback (``None`` when quiet) and ends
    the bar on exit, with its closing line only if the block finished."""
    callback, close = as_callback(progress, description, total)
    try:
        yield callback
    except BaseException:
        close(False)
        raise
    close(True)

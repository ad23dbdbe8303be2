"""Errors ropescope raises on purpose, and text made safe to print.

Every error a user can cause derives from :class:`RopescopeError`; the CLI prints its message as
one line and exits non-zero. Anything else is a bug in ropescope.
"""

import re
import unicodedata


class RopescopeError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""


class ModelLoadError(RopescopeError):
    """The named model could not be found, installed or loaded."""


class NoRopeError(RopescopeError):
    """The model has no rotary positional encoding."""


class UnsupportedModelError(RopescopeError):
    """The model uses RoPE in a way ropescope cannot hook."""


class GeometryMismatchError(RopescopeError):
    """Rotating the captured pre-RoPE q/k with the read geometry does not give the model's own."""


class PromptError(RopescopeError):
    """A prompt set or prompt file is missing, empty or unreadable."""


class ProfileFileError(RopescopeError):
    """A saved profile is missing, corrupt, or incompatible."""


class RunFileError(RopescopeError):
    """A file of a run directory (a head table, ``agreement.json``, a resume state...) is damaged,
    crafted or of another kind: the message names the file and the field."""


class NumericsError(RopescopeError):
    """Non-finite activations (NaN/inf) were met while profiling."""


class Interrupted(RopescopeError):
    """The run was stopped by Ctrl-C (SIGINT) or SIGTERM; the message says what was kept and how to resume."""


def first_line(exc: BaseException) -> str:
    """What an exception from a library says, for a one-line error: the first line of its message
    (with the next when the first ends in a colon), at most 300 characters; its type name when it
    has no message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= 300 else text[:297] + "..."


_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_TOKENS = re.compile(r"\bhf_[A-Za-z0-9]{16,}")
# a URL's query string (``?token=SECRET&...``) and fragment: where mirrors and proxies carry secrets
_URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#]*)[?#][^\s]*")


def printable(text: str) -> str:
    """``text`` safe to show in a terminal and a log: control characters (terminal escape sequences,
    carriage returns, bidirectional overrides), which could erase or fake a line, shown as ``\\x1b``
    etc.; credentials in a URL (``https://user:secret@host``), a URL's query string
    (``?token=...``, where a mirror's endpoint may carry one) and hub tokens replaced by ``***``.
    Names and text read from files and the environment pass through here before they are printed."""
    text = _URL_CREDENTIALS.sub(r"\1***@", str(text))
    text = _URL_QUERY.sub(r"\1?***", text)
    text = _TOKENS.sub("hf_***", text)
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") else ascii(c)[1:-1] for c in text)

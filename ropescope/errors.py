"""Errors ropescope raises on purpose.

Every error a user can cause derives from :class:`RopescopeError`; the CLI prints its message as
one line and exits non-zero. Anything else is a bug in ropescope.
"""


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

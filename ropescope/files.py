"""Every file ropescope writes appears whole or not at all, and every file it reads back is checked.

Writers put the content under a temporary name beside the target and rename it into place
(``os.replace`` is atomic on one file system), so a crash, Ctrl-C or a full disk never leaves a
half-written file or directory where a later run would trust it. Array files are safetensors
written by the ``safetensors`` library; their header holds one metadata key, ``ropescope``, whose
value is key-sorted JSON (``format``, ``format_version``, ``meta``, ``checksum``), so equal content
gives byte-identical files. The checksum is sha256 over ``meta`` and every array's bytes in name
order; reading verifies it and never executes code. Reading looks at the header first (format,
version) and loads array data only for a file that claims to be of the expected kind, so a large
file of another kind costs one header read. Writing refuses a header the reader would refuse
(:data:`MAX_HEADER_BYTES`), so whatever is written can be read back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from ropescope.errors import ProfileFileError, RopescopeError
from ropescope.options import TABLE_FORMATS

HEADER_KEY = "ropescope"
MAX_HEADER_BYTES = 64_000_000  # the safetensors reader refuses headers over 100 MB; stay well below


def user_umask() -> int:
    """The process's umask (read by setting it and putting it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_as_umask_says(path: str | os.PathLike, directory: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open``/``mkdir`` would: 0666 or 0777 less the umask
    (temporary files and directories are created 0600/0700, unreadable to colleagues)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~user_umask())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it is renamed to ``path`` when the block
    finishes and deleted when the block raises, so ``path`` is never seen half-written. The file
    gets the permissions the user's umask gives any new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        share_as_umask_says(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``out`` that replaces ``out`` only if the block finishes
    (an existing ``out`` is swapped out and deleted after the new one is in place). The directory
    gets the permissions the user's umask gives any new directory."""
    out = Path(out).expanduser()
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        yield tmp
        share_as_umask_says(tmp, directory=True)
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


def name_part(model: str, limit: int = 80) -> str:
    """A model name or path as a part of a file name: its last path component without ``.gguf``,
    characters other than letters, digits and ``._+-`` as ``_`` (no control character or separator
    read from a profile reaches a file name), at most ``limit`` characters (a 250-character checkpoint
    path never makes a figure name the file system refuses after the work is done)."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(str(model)).name.removesuffix(".gguf")).strip(".")
    return stem[:limit] or "model"


def set_aside(out: Path) -> Path:
    """Move ``out`` to ``.{name}.kept-*/{name}`` beside it, for a run that replaces it only when the
    run finishes (``train-prope --overwrite``); returns where it now is. Until the run deletes it,
    the next run on ``out`` restores it (:func:`_recover_leftovers`)."""
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.kept-", dir=out.parent))
    os.replace(out, holder / out.name)
    return holder / out.name


def _recover_leftovers(out: Path) -> None:
    """Settle what killed runs left beside ``out``.

    ``.{name}.kept-*``: an earlier output set aside by an ``--overwrite`` run that never finished;
    it comes back as ``out`` (the unfinished replacement is removed). ``.{name}.old-*``: an output
    :func:`atomic_directory` was replacing; it comes back only if the process died between the two
    renames (``out`` missing), else it is the superseded copy and is removed. ``.{name}.partial-*``:
    an output never completed, removed.
    """
    parent = out.parent
    for kept in sorted(parent.glob(f".{out.name}.kept-*")):
        if (kept / out.name).exists():
            if out.exists():
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            os.replace(kept / out.name, out)
            sys.stderr.write(f"restored {out}: the --overwrite run that was to replace it did not finish\n")
        shutil.rmtree(kept, ignore_errors=True)
    for old in parent.glob(f".{out.name}.old-*"):
        if not out.exists() and (old / out.name).exists():
            os.replace(old / out.name, out)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    for stale in parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


# the file that marks a resume-state directory (``OUT.resume``) as ropescope's own: only a
# directory that carries it is ever removed, so an input that happens to have that name never is
STATE_MARKER = ".ropescope-resume-state"


def check_state_dir(path: Path, adopt: bool = False) -> None:
    """Refuse, in one line, a ``path`` in the way of a resume-state directory that is not ropescope's:
    a file, a link, or a directory with content and no :data:`STATE_MARKER`. ``adopt``: a directory
    whose state the caller has just read and checked as its own (one written before the marker
    existed) is marked now."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise RopescopeError(
            f"{path} is in the way of the resume state and is not ropescope's; move it or name another --out"
        )
    if adopt:
        claim_state_dir(path)
    elif not (path / STATE_MARKER).is_file() and any(path.iterdir()):
        raise RopescopeError(
            f"{path} exists and is not ropescope's resume state (it keeps its state there); move it or name "
            "another --out"
        )


def claim_state_dir(path: Path) -> None:
    """Create ``path`` (if needed) as a resume-state directory of ropescope's, with its marker."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / STATE_MARKER
    if not marker.is_file():
        write_text(marker, "resume state written by ropescope; removed when its run finishes\n")


def release_state_dir(path: Path) -> None:
    """Remove a resume-state directory once its run has finished, only if it carries ropescope's
    marker (a directory of that name that ropescope did not make is left alone)."""
    if not path.is_symlink() and (path / STATE_MARKER).is_file():
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def output_lock(out: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold ``.{name}.lock`` beside ``out`` while a run writes it.

    A second ropescope run that would write the same output is refused at once, naming the first
    (its process id), or with ``wait`` waits for the first to finish (for shared caches, where the
    second run then finds the output ready). Leftovers of runs that were killed outright are settled
    first, since no live run can own them while the lock is held (:func:`_recover_leftovers`): a
    finished output is never what gets deleted. The lock file is removed on exit; a lock left by a
    killed process is released by the operating system with the process.
    """
    out = Path(out)
    parent = out.absolute().parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".{out.name}.lock"
    try:  # never through a link: a planted .x.lock -> victim would truncate the victim
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise RopescopeError(
                f"{path} (the output's lock file) is a symbolic link; ropescope writes nothing through it: "
                "remove it or name another --out"
            ) from None
        raise RopescopeError(f"cannot create the output's lock file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device planted under the lock's name
        os.close(fd)
        raise RopescopeError(f"{path} (the output's lock file) is not a regular file; remove it or name another --out")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RopescopeError(
                f"output {out} is being written by another ropescope run (process {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _recover_leftovers(out.absolute())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock
        for directory in reversed(created):  # directories made only to hold the lock
            with contextlib.suppress(OSError):
                directory.rmdir()


def write_table(frame, stem: str | os.PathLike, fmt: str = "csv") -> Path:
    """Write a pandas table as ``stem.csv``, ``stem.parquet`` or ``stem.json`` (records, one object
    per row), atomically; returns the path."""
    if fmt not in TABLE_FORMATS:
        raise RopescopeError(f"table format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    path = Path(f"{stem}.{fmt}")
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", indent=1)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, value) -> None:
    """Write ``value`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True))


def checksum(arrays: dict[str, np.ndarray], meta: str) -> str:
    """sha256 over ``meta`` and every array's name and bytes, in name order."""
    digest = hashlib.sha256(meta.encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def write_checked(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], fmt: str, version: int | str, meta: str
) -> Path:
    """Write ``arrays`` (unsigned integer arrays as uint64, all others as float64) and the JSON string
    ``meta`` as a checksummed safetensors file. Refused with :class:`ProfileFileError` before
    anything is written when the header would exceed :data:`MAX_HEADER_BYTES`."""
    arrays = {
        name: np.ascontiguousarray(value, dtype="<u8" if np.asarray(value).dtype.kind == "u" else "<f8")
        for name, value in arrays.items()
    }
    header = {"format": fmt, "format_version": str(version), "meta": meta, "checksum": checksum(arrays, meta)}
    encoded = json.dumps(header, sort_keys=True)
    if len(encoded) > MAX_HEADER_BYTES:
        raise ProfileFileError(
            f"cannot write {path}: its metadata would take {len(encoded) / 1e6:.0f} MB, more than the "
            f"{MAX_HEADER_BYTES / 1e6:.0f} MB a safetensors header may hold"
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_safetensors(arrays, {HEADER_KEY: encoded}, tmp)
    return path


def _write_safetensors(arrays: dict[str, np.ndarray], metadata: dict[str, str], path: Path) -> None:
    """The one place bytes reach the disk: the library's serialisation, flushed and fsynced."""
    blob = save(arrays, metadata=metadata)
    with open(path, "wb") as handle:
        handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())


def read_checked(path: str | os.PathLike, what: str, fmt: str, versions: tuple[str, ...]) -> tuple[dict, dict]:
    """``(arrays, header)`` of a file written by :func:`write_checked`; ``header["meta"]`` is the JSON string.

    Refused with :class:`ProfileFileError` (naming ``what`` and the path) when the file is missing,
    unreadable, of another format, of a version not in ``versions``, or fails its checksum. Files of
    format version 1, whose four header fields were separate metadata keys, are read too.
    """
    path = Path(path)
    if not path.is_file():
        raise ProfileFileError(f"no saved {what} at {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:  # reads the header only
            metadata = handle.metadata() or {}
        header = json.loads(metadata[HEADER_KEY]) if HEADER_KEY in metadata else dict(metadata)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ProfileFileError(f"{path} is not a readable ropescope {what} ({exc})") from None
    if header.get("format") != fmt:
        raise ProfileFileError(f"{path} is not a ropescope {what}")
    if header.get("format_version") not in versions:
        raise ProfileFileError(
            f"{path} has {what} format version {header.get('format_version')}; "
            f"this ropescope reads version {', '.join(versions)}"
        )
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ProfileFileError(f"{path} is not a readable ropescope {what} ({exc})") from None
    if header.get("checksum") != checksum(arrays, str(header.get("meta", ""))):
        raise ProfileFileError(f"{path} failed its checksum: the file was modified or is corrupt")
    return arrays, header

"""Hugging Face hub ids: downloaded through the ``huggingface_hub`` client on first use into the
usual Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``), and read from that cache afterwards,
exactly as ``transformers`` does. ``offline`` (``--offline``) or ``HF_HUB_OFFLINE=1`` means the
cache only; ``HF_ENDPOINT`` names another hub (a mirror, or the tests' stand-in on 127.0.0.1).

Every way a download can fail becomes one :class:`~ropescope.errors.ModelLoadError` line that names
the repository: gated (how to log in), not found, hub unreachable (``--offline`` if cached),
interrupted (run again to resume), no space left (the partial download is removed, so nothing
half-written is ever trusted).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from ropescope.errors import ModelLoadError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")
LOGIN = "log in with `hf auth login` or set HF_TOKEN"
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` or a short id like ``gpt2`` (no path separators, no ``..`` or ``--``)."""
    return bool(HUB_ID.fullmatch(name)) and ".." not in name and "--" not in name


def offline_mode(offline: bool = False) -> bool:
    """True when downloads are off: ``offline`` or ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return offline or any(flag.strip().upper() in ("1", "ON", "YES", "TRUE") for flag in flags)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def probe(repo: str, offline: bool, known: str, revision: str | None = None) -> None:
    """Fetch (or find in the cache) the repository's ``config.json`` at ``revision`` (a branch, tag
    or commit; None: the default branch), so that a gated, missing or unreachable repository, or a
    revision it does not have, fails here with its own one-line message. ``known`` lists the
    bundled names for the message of an unknown id."""
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(repo, "config.json", revision=revision, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 - every failure is mapped to one line or re-raised
        raise explain(repo, exc, offline, known, revision) from None


def explain(
    repo: str, exc: BaseException, offline: bool, known: str = "", revision: str | None = None
) -> BaseException:
    """The one-line :class:`ModelLoadError` for a failed download or cache look-up of ``repo``
    (``exc`` itself when it is none of the hub's failures)."""
    from huggingface_hub import errors

    chain = _chain(exc)
    where = endpoint()
    if any(isinstance(e, errors.GatedRepoError) for e in chain):
        return ModelLoadError(
            f"model {repo} is gated on the hub ({where}): accept its conditions on its page, then {LOGIN}"
        )
    if any(isinstance(e, errors.RepositoryNotFoundError) for e in chain):
        return ModelLoadError(
            f"unknown model {repo!r}: the hub ({where}) has no such model; check the id, or {LOGIN} if it is private"
        )
    if any(isinstance(e, errors.RevisionNotFoundError) for e in chain):
        named = f" {revision!r}" if revision else ""
        return ModelLoadError(
            f"model {repo} has no revision{named} on the hub ({where}); name a branch, tag or commit it has"
        )
    if any(isinstance(e, errors.RemoteEntryNotFoundError) for e in chain):
        return ModelLoadError(f"model {repo} on the hub ({where}) has no config.json: not a transformers checkpoint")
    disk = next((e for e in chain if isinstance(e, OSError) and e.errno in DISK_FULL), None)
    if disk is not None:
        removed = remove_partial_downloads(repo)
        return ModelLoadError(
            f"no space left to download {repo} into {cache_root()} ({os.strerror(disk.errno)}); free space or point "
            f"HF_HOME at a larger disk ({removed} partial file(s) removed, nothing half-written was kept)"
        )
    if offline_mode(offline) and any(
        isinstance(e, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) for e in chain
    ):
        return ModelLoadError(
            f"unknown model {repo!r}: not a bundled model ({known}), an existing path, or a hub id in the local "
            "Hugging Face cache (downloading is off: --offline or HF_HUB_OFFLINE=1)"
        )
    names = {type(e).__name__ for e in chain}
    if names & {"RemoteProtocolError", "ReadError", "IncompleteRead", "ChunkedEncodingError"}:
        return ModelLoadError(
            f"the download of {repo} from {where} was interrupted ({_first_line(chain[-1])}); run the same command "
            "again to resume it"
        )
    if names & {"ConnectError", "ConnectTimeout", "TimeoutException", "ReadTimeout", "LocalEntryNotFoundError"} or any(
        isinstance(e, errors.HfHubHTTPError) for e in chain
    ):
        return ModelLoadError(
            f"cannot reach the hub at {where} to download {repo} ({_first_line(chain[-1])}); "
            "if it is already in the local cache, pass --offline (or set HF_HUB_OFFLINE=1)"
        )
    return exc


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def remove_partial_downloads(repo: str) -> int:
    """Delete the client's ``*.incomplete`` files of ``repo``; return how many there were."""
    folder = cache_root() / ("models--" + repo.replace("/", "--")) / "blobs"
    partial = list(folder.glob("*.incomplete")) if folder.is_dir() else []
    for path in partial:
        path.unlink(missing_ok=True)
    return len(partial)


def _chain(exc: BaseException) -> list[BaseException]:
    seen, out = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]

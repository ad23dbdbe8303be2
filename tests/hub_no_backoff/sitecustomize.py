"""Imported by the Python of the hub tests' command-line subprocesses (their PYTHONPATH starts here):
the hub client's retry loop keeps its retries but does not sleep between them, so a refused
connection or a cut download fails in a second rather than after 23 s of back-off. Everything the
tests check (the one error line, what is left in the cache) is unchanged."""

import time
import types

try:
    from huggingface_hub.utils import _http
except Exception:  # noqa: BLE001 - a client without this module simply keeps its back-off
    pass
else:
    _http.time = types.SimpleNamespace(**{**vars(time), "sleep": lambda seconds: None})

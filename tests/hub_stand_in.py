"""A stand-in for the Hugging Face hub on 127.0.0.1, for tests: serves repositories from memory over
real HTTP the way the ``huggingface_hub`` client expects (``HEAD``/``GET /{repo}/resolve/{rev}/{file}``
with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``; errors as status plus ``X-Error-Code``).

``gated`` repositories answer every file with 403 ``GatedRepo``; unknown repositories 404
``RepoNotFound``; unknown files of a known repository 404 ``EntryNotFound``; a file named in
``truncate`` is cut off half-way through its body (an interrupted download). Nothing outside the
loopback interface is ever contacted, and every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.truncate: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_directory(self, repo: str, directory: Path) -> None:
        """Serve every file of ``directory`` as repository ``repo``."""
        self.repos[repo] = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.is_file()}

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                if "/resolve/" not in path:
                    return self._error(404, "EntryNotFound")
                repo, rest = path.lstrip("/").split("/resolve/", 1)
                filename = rest.split("/", 1)[1] if "/" in rest else ""
                if repo in hub.gated:
                    return self._error(403, "GatedRepo", "Access to model is restricted: you must be authenticated")
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound", "Repository not found")
                data = hub.repos[repo].get(filename)
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "none")
                self.end_headers()
                if body:
                    if (repo, filename) in hub.truncate:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str = ""):
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                if message:
                    self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

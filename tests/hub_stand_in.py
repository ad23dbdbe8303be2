"""A stand-in for the Hugging Face hub on 127.0.0.1, for tests: serves repositories from memory over
real HTTP the way the ``huggingface_hub`` client expects (``HEAD``/``GET /{repo}/resolve/{rev}/{file}``
with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``; errors as status plus ``X-Error-Code``).

``GET /api/models/{repo}[/revision/{rev}]`` (model info) and ``/api/models/{repo}/tree/{rev}`` (the
file list, which ``snapshot_download`` and sharded checkpoints need) are answered too.
``gated`` repositories answer every file with 403 ``GatedRepo``; unknown repositories 404
``RepoNotFound``; unknown files of a known repository 404 ``EntryNotFound``; a file named in
``truncate`` is cut off half-way through its body (an interrupted download). A repository may have
other revisions (``add_directory(..., revision="step-100")``), each with its own files and commit
hash; an unknown revision answers 404 ``RevisionNotFound``. Nothing outside the
loopback interface is ever contacted, and every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def commit_of(revision: str) -> str:
    """The commit hash the stand-in gives ``revision`` (``COMMIT`` for main)."""
    return COMMIT if revision == "main" else hashlib.sha1(revision.encode()).hexdigest()


def _etag(path: Path) -> str:
    """A content hash, as the hub's ETag is (size and time stand in for huge files)."""
    stat = path.stat()
    if stat.st_size > 1 << 28:
        return hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def char_tokenizer(directory: Path) -> None:
    """Save a real fast tokenizer (one token per printable ASCII character, ids 4..94, BOS first) to
    ``directory``, as a hub repository would hold it."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({chr(c): 4 + i for i, c in enumerate(range(32, 123))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(directory)


class HubStandIn:
    def __init__(self):
        self.repos: dict[str, dict[str, Path]] = {}
        self.revisions: dict[tuple[str, str], dict[str, Path]] = {}
        self.gated: set[str] = set()
        self.truncate: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_directory(self, repo: str, directory: Path, revision: str = "main") -> None:
        """Serve every file of ``directory`` as repository ``repo`` (at ``revision``: a branch or tag)."""
        files = {p.name: p for p in Path(directory).iterdir() if p.is_file()}
        if revision == "main":
            self.repos[repo] = files
        else:
            self.repos.setdefault(repo, {})
            self.revisions[(repo, revision)] = files

    def resolve(self, repo: str, revision: str) -> tuple[str, dict[str, Path]] | None:
        """(commit hash, files) of ``repo`` at ``revision`` (a name or a commit hash), or None."""
        if revision in ("main", COMMIT):
            return COMMIT, self.repos[repo]
        for (name, rev), files in self.revisions.items():
            if name == repo and revision in (rev, commit_of(rev)):
                return commit_of(rev), files
        return None

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
                if path.startswith("/api/models/"):
                    return self._api(path.removeprefix("/api/models/"))
                if "/resolve/" not in path:
                    return self._error(404, "EntryNotFound")
                repo, rest = path.lstrip("/").split("/resolve/", 1)
                revision, filename = rest.split("/", 1) if "/" in rest else (rest, "")
                if repo in hub.gated:
                    return self._error(403, "GatedRepo", "Access to model is restricted: you must be authenticated")
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound", "Repository not found")
                found = hub.resolve(repo, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                commit, files = found
                path = files.get(filename)
                if path is None:
                    return self._error(404, "EntryNotFound", "Entry not found")
                size = path.stat().st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", f'"{_etag(path)}"')
                self.send_header("X-Repo-Commit", commit)
                self.send_header("Accept-Ranges", "none")
                self.end_headers()
                if body:
                    limit = size // 2 if (repo, filename) in hub.truncate else size
                    with open(path, "rb") as handle:
                        sent = 0
                        while sent < limit:
                            chunk = handle.read(min(1 << 22, limit - sent))
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    if limit < size:  # an interrupted download: the connection drops mid-body
                        self.wfile.flush()
                        self.close_connection = True

            def _api(self, rest: str):
                """Model info (``{repo}`` or ``{repo}/revision/{rev}``) or the file tree (``{repo}/tree/{rev}``)."""
                repo, kind, revision = rest, "info", "main"
                for marker, name in (("/tree/", "tree"), ("/revision/", "info")):
                    if marker in rest:
                        repo, revision = rest.split(marker, 1)
                        kind, revision = name, revision.split("/", 1)[0] or "main"
                        break
                if repo in hub.gated:
                    return self._error(403, "GatedRepo", "Access to model is restricted: you must be authenticated")
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound", "Repository not found")
                found = hub.resolve(repo, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                sha, files = found
                if kind == "tree":
                    value = [
                        {"type": "file", "path": name, "size": p.stat().st_size, "oid": _etag(p)[:40]}
                        for name, p in sorted(files.items())
                    ]
                else:
                    value = {"id": repo, "modelId": repo, "sha": sha, "private": False, "gated": False}
                    value["siblings"] = [{"rfilename": name} for name in sorted(files)]
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str = ""):
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                if message:
                    self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

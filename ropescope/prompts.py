"""Text going in: prompt sets (built-in or the user's files) and held-out evaluation texts.

A user prompt file is plain text (one prompt per line, or prompts separated by blank lines when any blank
line is present) or JSON Lines with a ``text`` field (``.jsonl``).
"""

from __future__ import annotations

import ast
import json
import sysconfig
from importlib.resources import files
from pathlib import Path

from ropescope.errors import PromptError

BUILTIN_TEXTS = {"heldout": "heldout.txt"}
LONG_TEXT = "stdlib"  # the built-in evaluation text for long contexts: :func:`stdlib_docstrings`, whole
BUILTIN_SETS = {
    "shakespeare": "shakespeare.txt",
    "italian": "italian.txt",
    "chinese": "chinese.txt",
    "python": "python_code.txt",
    "addition": "addition.txt",
}


def check_texts(texts) -> list[str]:
    """The prompts of a Python call as a list of non-empty strings; anything else is refused with a
    :class:`PromptError` naming the problem (one string instead of a list would otherwise be read
    as one prompt per character)."""
    if isinstance(texts, (str, bytes)):
        raise PromptError(
            f"texts must be a list of prompts, got one {type(texts).__name__} of {len(texts)} characters; "
            "pass [text] for a single prompt"
        )
    try:
        texts = list(texts)
    except TypeError:
        raise PromptError(f"texts must be a list of prompts, got {type(texts).__name__}") from None
    if not texts:
        raise PromptError("the prompt set is empty")
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise PromptError(f"prompt {number} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise PromptError(f"prompt {number} is empty")
    return texts


LONG_SET = "stdlib-long"  # long documents for position studies, built from this machine's Python
LONG_DOCUMENTS, LONG_CHARACTERS = 4, 48_000  # about 10,000 Gemma 3 tokens each


def builtin_sets() -> list[str]:
    return sorted([*BUILTIN_SETS, LONG_SET])


def stdlib_docstrings() -> str:
    """The docstrings (over 40 characters) of the running Python's standard library, in file
    order, separated by blank lines: about 1.6 MB of English technical prose under the PSF license,
    present on every machine that runs ropescope (test suites, IDLE and lib2to3 left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for path in sorted(root.rglob("*.py")):
        if any(p in {"test", "tests", "idlelib", "site-packages", "lib2to3"} for p in path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(doc.strip())
    return "\n\n".join(parts)


def long_documents(count: int = LONG_DOCUMENTS, characters: int = LONG_CHARACTERS) -> list[str]:
    """``count`` documents of about ``characters`` characters each, cut from
    :func:`stdlib_docstrings` at docstring boundaries (the built-in set ``stdlib-long``)."""
    corpus = stdlib_docstrings()
    documents, start = [], 0
    while len(documents) < count and start < len(corpus):
        end = corpus.find("\n\n", start + characters)
        end = len(corpus) if end < 0 else end
        documents.append(corpus[start:end])
        start = end + 2
    return documents


def load_prompts(source: str) -> list[str]:
    """The prompts of a built-in set name or of a file path; raises :class:`PromptError`."""
    if source == LONG_SET:
        return long_documents()
    if source in BUILTIN_SETS:
        text = files("ropescope.data").joinpath(BUILTIN_SETS[source]).read_text(encoding="utf-8")
        return split_prompts(text)
    path = Path(source).expanduser()
    if not path.exists():
        raise PromptError(
            f"prompt set {source!r} is neither a built-in set ({', '.join(builtin_sets())}) nor an existing file"
        )
    if path.is_dir():
        raise PromptError(f"prompt file {source} is a directory")
    text = read_text_file(path, f"prompt file {source}")
    prompts = _jsonl_prompts(text, source) if path.suffix.lower() == ".jsonl" else split_prompts(text)
    if not prompts:
        raise PromptError(f"prompt file {source} holds no prompts")
    return prompts


MAX_TEXT_BYTES = 1 << 30  # a prompt or evaluation file larger than this is refused, not read
BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def read_text_file(path: Path, what: str) -> str:
    """The text of a user's file: UTF-8 (with or without a byte-order mark), or UTF-16 / UTF-32 with
    one. Refused with a :class:`PromptError` naming ``what`` when it is not a regular file (a device
    such as ``/dev/zero``, a pipe), larger than :data:`MAX_TEXT_BYTES`, binary, or not decodable
    (the line is named)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise PromptError(f"cannot read {what}: {exc.strerror}") from None
    if not path.is_file():
        raise PromptError(f"{what} is not a regular file")
    if info.st_size > MAX_TEXT_BYTES:
        raise PromptError(f"{what} is {info.st_size:,} bytes; files up to {MAX_TEXT_BYTES:,} bytes are read")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"cannot read {what}: {exc.strerror}") from None
    encoding, body = "utf-8", raw
    for bom, name in BOMS:
        if raw.startswith(bom):
            encoding, body = name, raw[len(bom) :]
            break
    if encoding == "utf-8" and b"\x00" in body:
        raise PromptError(f"{what} is binary, not text")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1 if encoding == "utf-8" else None
        where = f" (line {line})" if line else ""
        if encoding == "utf-8":
            raise PromptError(f"{what} is not UTF-8 text{where}") from None
        if b"\x00" in body:  # starts like UTF-16/32 but does not decode: bytes, not text
            raise PromptError(f"{what} is binary, not text") from None
        raise PromptError(
            f"{what} is not UTF-8 text, nor {encoding.upper()} after its {encoding.upper()} byte-order mark"
        ) from None
    if "\x00" in text:
        raise PromptError(f"{what} is binary, not text")
    return text


def split_prompts(text: str) -> list[str]:
    """Blank-line separated blocks (line breaks inside a block kept) if the text has a blank line,
    else one prompt per line."""
    text = text.replace("\r\n", "\n").lstrip("\ufeff").strip()
    lines = text.split("\n")
    if any(not line.strip() for line in lines):
        blocks, current = [], []
        for line in lines:
            if line.strip():
                current.append(line.rstrip())
            elif current:
                blocks.append("\n".join(current))
                current = []
        if current:
            blocks.append("\n".join(current))
        return blocks
    return [line.strip() for line in lines if line.strip()]


def _jsonl_prompts(text: str, source: str) -> list[str]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise PromptError(f"{source} line {number} is not valid JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PromptError(f"{source} line {number} has no string field 'text'")
        if record["text"].strip():
            prompts.append(record["text"])
    return prompts


def load_text(source: str) -> str:
    """A built-in evaluation text or a UTF-8 file, whole. Built in: ``heldout`` (5.6 kB of
    public-domain English prose, about 1,300 tokens) and ``stdlib`` (:func:`stdlib_docstrings`,
    about 400,000 tokens: the text for contexts past a model's trained length)."""
    if source == LONG_TEXT:
        return stdlib_docstrings()
    if source in BUILTIN_TEXTS:
        return files("ropescope.data").joinpath(BUILTIN_TEXTS[source]).read_text(encoding="utf-8")
    path = Path(source).expanduser()
    if not path.exists():
        raise PromptError(
            f"evaluation text {source!r} is neither a built-in text "
            f"({', '.join([*BUILTIN_TEXTS, LONG_TEXT])}) nor a file"
        )
    text = read_text_file(path, f"evaluation text {source}")
    if not text.strip():
        raise PromptError(f"evaluation text {source} is empty")
    return text

"""Text going in: prompt sets (built-in or the user's files) and held-out evaluation texts.

A user prompt file is plain text (one prompt per line, or prompts separated by blank lines when any blank
line is present) or JSON Lines with a ``text`` field (``.jsonl``).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from ropescope.errors import PromptError

BUILTIN_TEXTS = {"heldout": "heldout.txt"}
BUILTIN_SETS = {
    "shakespeare": "shakespeare.txt",
    "italian": "italian.txt",
    "chinese": "chinese.txt",
    "python": "python_code.txt",
    "addition": "addition.txt",
}


def builtin_sets() -> list[str]:
    return sorted(BUILTIN_SETS)


def load_prompts(source: str) -> list[str]:
    """The prompts of a built-in set name or of a file path; raises :class:`PromptError`."""
    if source in BUILTIN_SETS:
        text = files("ropescope.data").joinpath(BUILTIN_SETS[source]).read_text(encoding="utf-8")
        return split_prompts(text)
    path = Path(source)
    if not path.exists():
        raise PromptError(
            f"prompt set {source!r} is neither a built-in set ({', '.join(builtin_sets())}) nor an existing file"
        )
    if path.is_dir():
        raise PromptError(f"prompt file {source} is a directory")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PromptError(f"cannot read prompt file {source}: {exc.strerror}") from None
    if b"\x00" in raw:
        raise PromptError(f"prompt file {source} is binary, not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PromptError(f"prompt file {source} is not UTF-8 text") from None
    prompts = _jsonl_prompts(text, source) if path.suffix == ".jsonl" else split_prompts(text)
    if not prompts:
        raise PromptError(f"prompt file {source} holds no prompts")
    return prompts


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
    """A built-in held-out text (``heldout``: public-domain English prose) or a UTF-8 file, whole."""
    if source in BUILTIN_TEXTS:
        return files("ropescope.data").joinpath(BUILTIN_TEXTS[source]).read_text(encoding="utf-8")
    path = Path(source)
    if not path.is_file():
        raise PromptError(
            f"evaluation text {source!r} is neither a built-in text ({', '.join(BUILTIN_TEXTS)}) nor a file"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise PromptError(f"evaluation text {source} is not UTF-8 text") from None
    if not text.strip():
        raise PromptError(f"evaluation text {source} is empty")
    return text

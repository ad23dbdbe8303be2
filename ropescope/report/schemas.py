"""What each file that ropescope reads back may hold: one schema per file kind, checked on read.

Run directories travel between people, so every value read from one is untrusted: a damaged or
crafted ``heads.csv``, ``agreement.json``, ``causal.csv`` or ``attention.json`` must be refused in
one line naming the file and the field, never reach a format string, a plot or the report as a
value of the wrong type. (Profiles carry their own checks: :mod:`ropescope.profiling.content`.)

A schema is a dict ``field -> Field``. :func:`check_record` checks a JSON object against one,
:func:`check_table` a table's columns (and converts them to their type); both raise
:class:`~ropescope.errors.RunFileError`.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ropescope.errors import RunFileError
from ropescope.heads.scan import CLASS_ORDER


@dataclass(frozen=True)
class Field:
    """One field: ``kind`` is "int", "number" (NaN allowed where ``nan``), "text" or "bool";
    ``low``/``high`` bound numbers; ``choices`` lists the allowed texts; ``required`` fields must be
    present; ``null`` allows JSON null (an empty cell in a table)."""

    kind: str
    required: bool = True
    low: float | None = None
    high: float | None = None
    nan: bool = False
    null: bool = False
    choices: tuple[str, ...] | None = None


def _fail(path, field: str, why: str) -> RunFileError:
    return RunFileError(f"{path}: field {field!r:.60} {why}")


def check_value(value, spec: Field, path, field: str):
    """``value`` if it fits ``spec`` (ints as int, numbers as float), else :class:`RunFileError`."""
    if value is None:
        if spec.null:
            return None
        raise _fail(path, field, "is missing (null)")
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(path, field, f"must be true or false, got {value!r:.40}")
        return value
    if spec.kind == "text":
        if not isinstance(value, str):
            raise _fail(path, field, f"must be text, got {value!r:.40}")
        if spec.choices is not None and value not in spec.choices:
            raise _fail(path, field, f"must be one of {', '.join(spec.choices)}, got {value!r:.40}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(path, field, f"must be a number, got {value!r:.40}")
    if spec.kind == "int":
        if not float(value).is_integer():
            raise _fail(path, field, f"must be an integer, got {value!r:.40}")
        value = int(value)
    else:
        value = float(value)
        if math.isnan(value):
            if spec.nan:
                return value
            raise _fail(path, field, "is NaN")
        if math.isinf(value):
            raise _fail(path, field, f"is {value}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise _fail(path, field, f"must lie in [{spec.low}, {spec.high}], got {value!r:.40}")
    return value


def check_record(record, schema: dict[str, Field], path) -> dict:
    """A JSON object checked against ``schema`` (fields outside the schema are kept as they are)."""
    if not isinstance(record, dict):
        raise RunFileError(f"{path} holds a JSON {type(record).__name__}, not an object")
    out = dict(record)
    for name, spec in schema.items():
        if name not in record:
            if spec.required:
                raise _fail(path, name, "is missing")
            continue
        out[name] = check_value(record[name], spec, path, name)
    return out


def check_table(frame: pd.DataFrame, schema: dict[str, Field], path, pattern_fields=None) -> pd.DataFrame:
    """``frame`` with every schema column checked cell by cell and converted to its type.

    ``pattern_fields`` maps a column-name regex (e.g. ``offset_\\d+``) to the Field of every column
    it matches. Integer columns become ``Int64`` (nullable where ``null``), numbers float64, texts
    ``object`` with ``None`` for an empty cell (where ``null``).
    """
    frame = frame.copy()
    columns = dict(schema)
    for pattern, spec in (pattern_fields or {}).items():
        columns.update({c: spec for c in frame.columns if re.fullmatch(pattern, str(c))})
    for name, spec in columns.items():
        if name not in frame.columns:
            if spec.required:
                raise _fail(path, name, "(a column) is missing")
            continue
        values = []
        for row, cell in enumerate(frame[name].tolist()):
            cell = _cell(cell, spec)
            values.append(check_value(cell, spec, f"{path} row {row + 1}", name))
        if spec.kind == "int":
            frame[name] = pd.array(values, dtype="Int64")
        elif spec.kind == "number":
            frame[name] = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        else:
            frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _cell(cell, spec: Field):
    """A CSV cell as the JSON-like value the schema checks: empty -> None; numeric text -> number."""
    if cell is None or isinstance(cell, float) and math.isnan(cell) and spec.kind != "number":
        return None
    if isinstance(cell, np.generic):
        cell = cell.item()
    if isinstance(cell, str) and spec.kind in ("int", "number"):
        try:
            return float(cell)
        except ValueError:
            return cell  # refused by check_value with the text shown
    if isinstance(cell, (int, float)) and not isinstance(cell, bool) and spec.kind == "text":
        return str(cell) if spec.choices is None else cell
    return cell


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV table as text cells (nothing guessed), refused in one line when it is not one."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise RunFileError(f"{path} is not a readable CSV table ({type(exc).__name__})") from None


_PROBABILITY = Field("number", low=0.0, high=1.0, nan=True)
_LOGIT = Field("number", nan=True, required=False)

HEADS_TABLE = {
    "layer": Field("int", low=0),
    "head": Field("int", low=0),
    "kv_head": Field("int", low=0),
    "sink": _PROBABILITY,
    "class": Field("text", choices=CLASS_ORDER),
    "score": _PROBABILITY,
    "target": Field("text", null=True, required=False),
    "target_offset": Field("int", low=0, null=True, required=False),
    "positional_score": Field("number", low=0.0, high=1.0, nan=True, required=False),
    "hf_score": Field("number", low=0.0, high=1.0, nan=True),
    "attr_hf_share": Field("number", nan=True, required=False),
    "attr_top_chunks": Field("text", null=True, required=False),
    "target_logit": _LOGIT,
    "other_logit": _LOGIT,
}
HEADS_OFFSETS = {r"offset_\d+": _PROBABILITY}

CAUSAL_TABLE = {
    "layer": Field("int", low=0),
    "head": Field("int", low=0),
    "offset": Field("int", low=0),
    "condition": Field("text"),
    "chunks": Field("text", null=True),
    "score": Field("number", nan=True),
    "change": Field("number", nan=True),
}

AGREEMENT = {
    "spearman": Field("number", low=-1.0, high=1.0, nan=True),
    "n_positional": Field("int", low=0),
    "precision_at_n": Field("number", low=0.0, high=1.0, nan=True),
    "threshold": Field("number", low=0.0, high=1.0, required=False),
    "max_offset": Field("int", low=0, required=False),
    "hf_fraction": Field("number", low=0.0, high=1.0, required=False),
}


def check_heads_table(frame: pd.DataFrame, path, n_layers: int, n_heads: int, n_kv_heads: int) -> pd.DataFrame:
    """A head table (``heads.csv``) of a model with these sizes: one row per (layer, head) in range,
    offsets ``offset_0 .. offset_K`` without a gap."""
    frame = check_table(frame, HEADS_TABLE, path, HEADS_OFFSETS)
    offsets = sorted(int(c.split("_")[1]) for c in frame.columns if re.fullmatch(r"offset_\d+", str(c)))
    if not offsets or offsets != list(range(len(offsets))):
        raise RunFileError(f"{path}: offset columns must run offset_0, offset_1, ... without a gap")
    _check_heads_in_range(frame, path, n_layers, n_heads, n_kv_heads)
    if frame.duplicated(["layer", "head"]).any():
        raise RunFileError(f"{path}: a (layer, head) appears twice")
    return frame


def check_causal_table(frame: pd.DataFrame, path, n_layers: int, n_heads: int) -> pd.DataFrame:
    """A causal-test table (``causal.csv``) with ``chunks`` as text ("" where none were zeroed)."""
    frame = check_table(frame, CAUSAL_TABLE, path)
    frame["chunks"] = frame["chunks"].map(lambda c: "" if c is None else c)
    _check_heads_in_range(frame, path, n_layers, n_heads, None)
    return frame


def _check_heads_in_range(frame, path, n_layers: int, n_heads: int, n_kv_heads: int | None) -> None:
    for column, size in (("layer", n_layers), ("head", n_heads), ("kv_head", n_kv_heads)):
        if size is None or column not in frame:
            continue
        too_big = frame[column] >= size
        if too_big.any():
            raise RunFileError(f"{path}: field {column!r} is {frame[column][too_big].iloc[0]}, the model has {size}")


def check_attention(record, path, n_layers: int, n_heads: int) -> dict:
    """``attention.json``: ``tokens`` (texts) and ``heads`` mapping ``"layer,head"`` to a square
    matrix of attention probabilities with one row and column per token."""
    if not isinstance(record, dict):
        raise RunFileError(f"{path} holds a JSON {type(record).__name__}, not an object")
    tokens = record.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise _fail(path, "tokens", "must be a list of texts")
    heads = record.get("heads")
    if not isinstance(heads, dict):
        raise _fail(path, "heads", "must map 'layer,head' to a matrix")
    for key, matrix in heads.items():
        match = re.fullmatch(r"(\d+),(\d+)", key)
        if match is None or int(match.group(1)) >= n_layers or int(match.group(2)) >= n_heads:
            raise _fail(path, f"heads.{key}", f"is not a 'layer,head' of a model of {n_layers} x {n_heads} heads")
        if not isinstance(matrix, list) or len(matrix) != len(tokens):
            raise _fail(path, f"heads.{key}", f"must hold {len(tokens)} rows, one per token")
        for row in matrix:
            if not isinstance(row, list) or len(row) != len(tokens):
                raise _fail(path, f"heads.{key}", f"must hold {len(tokens)} columns per row")
            for value in row:
                check_value(value, Field("number", low=0.0, high=1.0), path, f"heads.{key}")
    return record

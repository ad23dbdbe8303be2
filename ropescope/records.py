"""Checking what is read back from a file: a schema is a dict ``field -> Field``.

Files travel between people, so every value read from one is untrusted: a damaged or crafted file
must be refused in one line naming the file and the field, and never reach a format string, a plot
or a report as a value of the wrong type. :func:`check_record` checks a JSON object against a
schema, :func:`check_table` a table's columns (and converts them to their type); both raise
:class:`~ropescope.errors.RunFileError`. The schemas of each file kind live beside their readers
(:mod:`ropescope.report.schemas` for run directories, the resume states beside their writers).
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


def field_error(path, field: str, why: str) -> RunFileError:
    return RunFileError(f"{path}: field {field!r:.60} {why}")


def check_value(value, spec: Field, path, field: str):
    """``value`` if it fits ``spec`` (ints as int, numbers as float), else :class:`RunFileError`."""
    if value is None:
        if spec.null:
            return None
        raise field_error(path, field, "is missing (null)")
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise field_error(path, field, f"must be true or false, got {value!r:.40}")
        return value
    if spec.kind == "text":
        if not isinstance(value, str):
            raise field_error(path, field, f"must be text, got {value!r:.40}")
        if spec.choices is not None and value not in spec.choices:
            raise field_error(path, field, f"must be one of {', '.join(spec.choices)}, got {value!r:.40}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise field_error(path, field, f"must be a number, got {value!r:.40}")
    if spec.kind == "int":
        if not float(value).is_integer():
            raise field_error(path, field, f"must be an integer, got {value!r:.40}")
        value = int(value)
    else:
        value = float(value)
        if math.isnan(value):
            if spec.nan:
                return value
            raise field_error(path, field, "is NaN")
        if math.isinf(value):
            raise field_error(path, field, f"is {value}")
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise field_error(path, field, f"must lie in [{spec.low}, {spec.high}], got {value!r:.40}")
    return value


def check_record(record, schema: dict[str, Field], path) -> dict:
    """A JSON object checked against ``schema`` (fields outside the schema are kept as they are)."""
    if not isinstance(record, dict):
        raise RunFileError(f"{path} holds a JSON {type(record).__name__}, not an object")
    out = dict(record)
    for name, spec in schema.items():
        if name not in record:
            if spec.required:
                raise field_error(path, name, "is missing")
            continue
        out[name] = check_value(record[name], spec, path, name)
    return out


def check_table(frame: pd.DataFrame, schema: dict[str, Field], path, pattern_fields=None) -> pd.DataFrame:
    """``frame`` with every schema column checked cell by cell and converted to its type.

    ``pattern_fields`` maps a column-name regex (e.g. ``offset_\\d+``) to the Field of every column
    it matches. Integer columns become int64 (``Int64``, nullable, where ``null``), numbers float64, texts
    ``object`` with ``None`` for an empty cell (where ``null``).
    """
    frame = frame.copy()
    columns = dict(schema)
    for pattern, spec in (pattern_fields or {}).items():
        columns.update({c: spec for c in frame.columns if re.fullmatch(pattern, str(c))})
    for name, spec in columns.items():
        if name not in frame.columns:
            if spec.required:
                raise field_error(path, name, "(a column) is missing")
            continue
        values = []
        for row, cell in enumerate(frame[name].tolist()):
            cell = _cell(cell, spec)
            values.append(check_value(cell, spec, f"{path} row {row + 1}", name))
        if spec.kind == "int":
            frame[name] = pd.array(values, dtype="Int64") if spec.null else np.asarray(values, dtype=np.int64)
        elif spec.kind == "number":
            frame[name] = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        else:
            missing = any(v is None for v in values)
            frame[name] = pd.Series(values, index=frame.index, dtype=object if missing else "str")
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

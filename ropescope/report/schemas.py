"""The schema of each file of a run directory that the report reads back (``heads.csv``,
``causal.csv``, ``agreement.json``, ``attention.json``), checked on read with
:mod:`ropescope.records`: one line naming file and field for anything damaged or crafted.
(Profiles carry their own checks: :mod:`ropescope.profiling.content`.)
"""

from __future__ import annotations

import re

import pandas as pd

from ropescope.errors import RunFileError
from ropescope.heads.scan import CLASS_ORDER
from ropescope.records import Field, check_table, check_value, field_error

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
        raise field_error(path, "tokens", "must be a list of texts")
    heads = record.get("heads")
    if not isinstance(heads, dict):
        raise field_error(path, "heads", "must map 'layer,head' to a matrix")
    for key, matrix in heads.items():
        match = re.fullmatch(r"(\d+),(\d+)", key)
        if match is None or int(match.group(1)) >= n_layers or int(match.group(2)) >= n_heads:
            raise field_error(path, f"heads.{key}", f"is not a 'layer,head' of a model of {n_layers} x {n_heads} heads")
        if not isinstance(matrix, list) or len(matrix) != len(tokens):
            raise field_error(path, f"heads.{key}", f"must hold {len(tokens)} rows, one per token")
        for row in matrix:
            if not isinstance(row, list) or len(row) != len(tokens):
                raise field_error(path, f"heads.{key}", f"must hold {len(tokens)} columns per row")
            for value in row:
                check_value(value, Field("number", low=0.0, high=1.0), path, f"heads.{key}")
    return record

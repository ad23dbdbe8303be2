"""Checkpoints of a profiling run's accumulated statistics, to resume it after an interruption.

The state (statistics arrays, batches done, longest sequence, and a key that names the model,
prompt set and options) is one checksummed safetensors file written atomically
(:mod:`ropescope.files`); loading it executes no code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ropescope.errors import ProfileFileError, RunFileError
from ropescope.files import read_checked, write_checked
from ropescope.hooks.stats import ChunkNormStats
from ropescope.profiling.result import TENSORS
from ropescope.records import Field, check_record

FORMAT = "ropescope-resume-state"
FORMAT_VERSION = 1


def run_key(**fields) -> str:
    """A hash of everything that must match for a state to be resumed (model, prompts, options)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_state(path: Path, key: str, batches_done: int, stats: dict[str, ChunkNormStats], max_seq_len: int) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name in TENSORS:
        arrays.update(stats[name].to_arrays(name))
    meta = {"key": key, "batches_done": batches_done, "max_seq_len": max_seq_len}
    write_checked(path, arrays, FORMAT, FORMAT_VERSION, json.dumps(meta, sort_keys=True))


_STATE = {"key": Field("text"), "batches_done": Field("int", low=0), "max_seq_len": Field("int", low=0)}


def load_state(path: Path, key: str) -> dict:
    """The saved state, if it belongs to the same run (``key``); raises :class:`ProfileFileError`."""
    try:
        arrays, header = read_checked(path, "resume state", FORMAT, (str(FORMAT_VERSION),))
        meta = check_record(json.loads(header["meta"]), _STATE, path)
        if meta.get("key") != key:
            raise ProfileFileError(
                f"resume state {path} belongs to another model, prompt set or options; delete it to start over"
            )
        return {
            "batches_done": meta["batches_done"],
            "max_seq_len": meta["max_seq_len"],
            "stats": {name: ChunkNormStats.from_arrays(arrays, name) for name in TENSORS},
        }
    except ProfileFileError as exc:
        if "delete it" in str(exc):
            raise
        raise ProfileFileError(f"resume state {path} is unreadable ({exc}); delete it to start over") from None
    except (KeyError, ValueError, TypeError, RunFileError) as exc:
        raise ProfileFileError(f"resume state {path} is unreadable ({exc}); delete it to start over") from None

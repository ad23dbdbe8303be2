"""Checkpoints of a profiling run's accumulated statistics, to resume it after an interruption.

The state (statistics arrays, batches done, longest sequence, and a key that names the model,
prompt set and options) is one safetensors file written atomically; loading it executes no code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from ropescope.errors import ProfileFileError
from ropescope.profile import TENSORS, write_atomically
from ropescope.stats import ChunkNormStats


def run_key(**fields) -> str:
    """A hash of everything that must match for a state to be resumed (model, prompts, options)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_state(path: Path, key: str, batches_done: int, stats: dict[str, ChunkNormStats], max_seq_len: int) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name in TENSORS:
        arrays.update(stats[name].to_arrays(name))
    meta = {"key": key, "batches_done": str(batches_done), "max_seq_len": str(max_seq_len)}
    write_atomically(arrays, meta, path)


def load_state(path: Path, key: str) -> dict:
    """The saved state, if it belongs to the same run (``key``); raises :class:`ProfileFileError`."""
    try:
        arrays = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ProfileFileError(f"resume state {path} is unreadable ({exc}); delete it to start over") from None
    if meta.get("key") != key:
        raise ProfileFileError(
            f"resume state {path} belongs to another model, prompt set or options; delete it to start over"
        )
    return {
        "batches_done": int(meta["batches_done"]),
        "max_seq_len": int(meta["max_seq_len"]),
        "stats": {name: ChunkNormStats.from_arrays(arrays, name) for name in TENSORS},
    }

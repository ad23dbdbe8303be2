"""Saved profiles as other ropescope versions would have written them (for refusal tests)."""

import importlib
import json
from pathlib import Path

profile_module = importlib.import_module("ropescope.profile")  # the module, not the profile() function


def save_with_format_version(prof, path: Path, version: str) -> Path:
    """Write ``prof`` like :meth:`Profile.save`, valid checksum included, but stamped ``version``."""
    arrays = {}
    for tensor in profile_module.TENSORS:
        arrays.update(prof.stats[tensor].to_arrays(tensor))
    meta = json.dumps(prof.meta, sort_keys=True)
    header = {
        "format": profile_module.FORMAT,
        "format_version": version,
        "meta": meta,
        "checksum": profile_module._checksum(arrays, meta),
    }
    profile_module._write_safetensors(arrays, header, path)
    return path

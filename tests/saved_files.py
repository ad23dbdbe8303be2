"""Saved profiles as other ropescope versions would have written them (for refusal tests)."""

import json
from pathlib import Path

from ropescope import files
from ropescope.profiling import result as profile_module


def save_with_format_version(prof, path: Path, version: str) -> Path:
    """Write ``prof`` like :meth:`Profile.save`, valid checksum included, but stamped ``version``."""
    arrays = {}
    for tensor in profile_module.TENSORS:
        arrays.update(prof.stats[tensor].to_arrays(tensor))
    meta = json.dumps(prof.meta, sort_keys=True)
    files.write_checked(path, arrays, profile_module.FORMAT, version, meta)
    return path

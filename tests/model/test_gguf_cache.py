"""GGUF conversions in the cache: leftovers of a conversion killed outright are reclaimed."""

import pytest

from ropescope.errors import ModelLoadError
from ropescope.model.bundled import cache_dir, conversion_target
from ropescope.model.loading import load_model


def test_a_killed_conversions_temporary_directory_is_removed_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPESCOPE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)  # starts like a GGUF file, then ends
    target = conversion_target(gguf, "broken")
    stale = target.parent / f".{target.name}.partial-x1y2z3"  # what SIGKILL mid-conversion leaves
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.safetensors").write_bytes(b"half")
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(str(gguf))
    assert not stale.exists()
    assert sorted(p.name for p in (cache_dir() / "converted").iterdir()) == []  # no lock file, nothing half-made

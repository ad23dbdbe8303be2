import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gemma_dir():
    """The converted real Gemma 3 270M checkpoint directory (converted once into the cache)."""
    from ropescope.model import checkpoint_dir

    return checkpoint_dir("gemma-3-270m")


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma 3 270M, float32, loaded once per test session."""
    import ropescope

    return ropescope.load_model("gemma-3-270m")

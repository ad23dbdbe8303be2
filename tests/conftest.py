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


if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core (pyproject's -n auto): each computes on one thread, and so do the command
    # lines and notebooks it starts, so the workers share the cores instead of fighting over them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: E402

    torch.set_num_threads(1)

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


# The quick tier (`pytest -m "not slow"`, about 3 minutes on 2 cores): every test but the files that
# take longest in a full run (end-to-end command lines, the families survey, the hub stand-in,
# notebooks, signals, launchers) and the tests on a real checkpoint. The full run keeps them all.
SLOW_FILES = {
    "tests/model/test_hub.py",
    "tests/model/test_families.py",
    "tests/figures/test_notebook_and_figures.py",
    "tests/cli/test_resume_hints.py",
    "tests/heads/test_head_views.py",
    "tests/cli/test_signals.py",
    "tests/profiling/test_launchers.py",
    "tests/cli/test_bad_input_matrix.py",
    "tests/profiling/test_resume.py",
    "tests/prope/test_training_dynamics.py",
    "tests/prope/test_perplexity_train.py",
    "tests/docs/test_site.py",
    "tests/report/test_report.py",
    "tests/profiling/test_long_context.py",
    "tests/cli/test_concurrency.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::")[0] in SLOW_FILES or item.get_closest_marker("real") is not None:
            item.add_marker(pytest.mark.slow)

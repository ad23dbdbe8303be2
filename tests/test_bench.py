"""The GPU benchmark's code runs (on a shrunken config, on CPU): a smoke test, not a measurement."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_gpu_benchmark_runs_every_case_on_a_small_config(tmp_path):
    import gpu_gemma7b

    out = tmp_path / "gpu.csv"
    gpu_gemma7b.main(["--small", "--device", "cpu", "--tokens", "48", "--reps", "1", "--out", str(out)])
    frame = pd.read_csv(out)
    assert set(frame.case) >= {"forward", "profile", "heads", "eager_attn"}
    assert frame.seconds.notna().all()

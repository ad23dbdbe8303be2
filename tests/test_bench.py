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


def test_targets_table_sets_each_measured_ratio_against_its_target(tmp_path, monkeypatch):
    import targets

    monkeypatch.setattr(targets, "STORE", tmp_path / "ratios.json")
    monkeypatch.setattr(targets, "RESULTS", tmp_path)
    targets.record("whole_profile", {"whole profile() / forward, 512 tokens": 1.01})
    targets.record("heads_vs_eager", {"heads time / forward, 8,192 tokens": 1.48})
    targets.record("load_time", {"import floor: torch + transformers + modeling (s)": 2.9})
    lines = targets.table().splitlines()
    row = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert "| <= 1.02x | 1.010x | yes |" in row["whole profile() / forward, 512 tokens"]
    assert "| <= 1.3x | 1.480x | **no** |" in row["heads time / forward, 8,192 tokens"]
    assert "(context)" in row["import floor: torch + transformers + modeling (s)"]
    assert "not measured yet" in row["figures, all entries / previous release"]


def test_compile_benchmark_matches_the_joint_update(capsys):
    """The compiled statistics benchmark's function (run through dynamo without a compiler) gives
    the eager joint update's token sums, sums of squares and maxima: its ratios compare like with like."""
    import compile_stats

    compile_stats.main(["--tokens", "40", "--layers", "2", "--reps", "1", "--backend", "eager"])
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert row[0] == "40" and float(row[-1]) < 1e-12

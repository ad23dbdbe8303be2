"""train-prope --profile-every: a snapshot taken during training equals a snapshot of the saved
checkpoint, a resumed run records exactly the rows of an uninterrupted one, and the command writes
the table, the profiles and the figure."""

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

import ropescope
from ropescope.dynamics import TrainingRecorder, snapshot_row
from ropescope.dynamics.snapshots import snapshot_texts
from ropescope.prope.train import (
    TrainConfig,
    build_model,
    checkpoint_stem,
    load_checkpoint_weights,
    load_corpus,
    run_t2,
    set_encoding,
)

CONFIG = TrainConfig.small(layers=2, hidden=32, seq_len=32, batch=4, steps=6)
LIMIT = 200_000


def _valid():
    corpus, _ = load_corpus(LIMIT)
    data = np.frombuffer(corpus, dtype=np.uint8)
    return data[int(len(data) * 0.9) :]


def test_snapshot_during_training_equals_the_saved_checkpoints(tmp_path):
    recorder = TrainingRecorder(tmp_path, CONFIG.seq_len)
    run_t2(tmp_path, CONFIG, 1, ("RoPE theta=10k",), limit_bytes=LIMIT, snapshots=recorder, snapshot_every=3)
    table = recorder.table()
    assert table.step.tolist() == [0, 3, 6]
    model = build_model("RoPE theta=10k", CONFIG, 0)
    step = load_checkpoint_weights(model, checkpoint_stem(tmp_path / "checkpoints", "RoPE theta=10k", 0))
    set_encoding(model, "RoPE theta=10k")
    assert step == 6
    row, prof = snapshot_row(model, snapshot_texts(_valid(), CONFIG.seq_len))
    recorded = table[table.step == 6].iloc[0]
    for key, value in row.items():
        assert recorded[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    saved = ropescope.load_profile(tmp_path / "profiles" / "RoPE_theta10k-seed0-step6.safetensors")
    np.testing.assert_allclose(saved.stats["k"].mean.numpy(), prof.stats["k"].mean.numpy(), rtol=1e-6)
    assert recorded["k_slowest"] == pytest.approx(np.mean(ropescope.profiling.band_shares(saved, "k")[:, -1]))


def test_a_resumed_run_records_the_rows_of_an_uninterrupted_one(tmp_path):
    config = TrainConfig(**{**CONFIG.__dict__, "checkpoint_every": 3})
    whole = TrainingRecorder(tmp_path / "whole", config.seq_len)
    run_t2(tmp_path / "whole", config, 1, ("NoPE",), limit_bytes=LIMIT, snapshots=whole, snapshot_every=2)

    class Stop(Exception):
        pass

    broken = TrainingRecorder(tmp_path / "broken", config.seq_len)

    def stopping(encoding, seed, valid):
        inner = broken(encoding, seed, valid)

        def snapshot(model, step):
            inner(model, step)
            if step == 4:  # after the step-3 checkpoint, before the next one
                raise Stop

        return snapshot

    with pytest.raises(Stop):
        run_t2(tmp_path / "broken", config, 1, ("NoPE",), limit_bytes=LIMIT, snapshots=stopping, snapshot_every=2)
    run_t2(tmp_path / "broken", config, 1, ("NoPE",), limit_bytes=LIMIT, snapshots=broken, snapshot_every=2)
    expected, got = whole.table(), broken.table()
    assert got.step.tolist() == [0, 2, 4, 6]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-6)


def test_command_writes_dynamics(tmp_path):
    out = tmp_path / "t2"
    args = ["--out", str(out), "--seeds", "1", "--steps", "4", "--layers", "1", "--hidden", "16", "--seq-len", "32"]
    result = run_cli("train-prope", *args, "--batch", "2", "--encodings", "NoPE", "--profile-every", "2")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "training_profiles.csv")
    assert table.step.tolist() == [0, 2, 4]
    assert {"training_dynamics.png", "training_dynamics.pdf"} <= {p.name for p in out.iterdir()}
    assert len(list((out / "profiles").glob("*.safetensors"))) == 3

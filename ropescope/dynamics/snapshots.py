"""Snapshots of a model during ``train-prope``: its chunk-norm profile and head scan on fixed
held-out windows, reduced to the numbers that show when the low-frequency bands and the
positional heads appear.

One row per (encoding, seed, step) in ``training_profiles.csv``:

- ``q_slowest``, ``k_slowest``: share of the query / key norm in the slowest quarter of the chunks,
  averaged over layers (:func:`ropescope.profiling.bands.band_shares`; 0.25 = no preference);
- ``q_fastest``, ``k_fastest``: the same for the fastest quarter;
- ``previous_token``: the largest mean attention of any head on the previous token (offset 1);
- ``diagonal``: the largest mean attention of any head on its own token (offset 0);
- ``n_positional``: heads at or above the scan's 0.5 threshold on one offset.

Each snapshot's profile is also saved (``profiles/<run>-step<N>.safetensors``), so any step can
be looked at again (``ropescope report``, ``ropescope compare``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ropescope.files import atomic_path
from ropescope.heads.scan import POSITIONAL, scan_heads
from ropescope.profiling.bands import band_shares
from ropescope.prope.train import checkpoint_stem

SNAPSHOT_WINDOWS = 8  # held-out windows each snapshot runs (evenly spaced, the same at every step)
KEYS = ["encoding", "seed", "step"]


class ByteTokenizer:
    """The byte-level "tokenizer" of the train-prope models: a text's latin-1 bytes as ids, no BOS."""

    pad_token_id = 0
    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True, **_):
        return {"input_ids": list(text.encode("latin-1"))}

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("latin-1")


def snapshot_texts(valid: np.ndarray, seq_len: int, windows: int = SNAPSHOT_WINDOWS) -> list[str]:
    """``windows`` evenly spaced held-out windows of ``seq_len`` bytes, as latin-1 text (exact bytes)."""
    starts = np.linspace(0, len(valid) - seq_len - 1, windows).astype(int)
    return [bytes(valid[s : s + seq_len]).decode("latin-1") for s in starts]


def scan_numbers(report) -> dict:
    """The numbers of one snapshot (see the module docstring) from a head scan (``HeadReport``: its
    table and the q/k profile it ran on)."""
    prof, table = report.profile, report.table
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {t: band_shares(prof, t) for t in ("q", "k")}
    return {
        "q_slowest": float(np.nanmean(shares["q"][:, -1])),
        "k_slowest": float(np.nanmean(shares["k"][:, -1])),
        "q_fastest": float(np.nanmean(shares["q"][:, 0])),
        "k_fastest": float(np.nanmean(shares["k"][:, 0])),
        "previous_token": float(table["offset_1"].max()),
        "diagonal": float(table["offset_0"].max()),
        "n_positional": int(table["class"].isin(POSITIONAL).sum()),
    }


def snapshot_row(model, texts: list[str]) -> tuple[dict, object]:
    """The row's numbers (see the module docstring) and the profile they come from."""
    was_training = model.training
    model.eval()
    try:
        report = scan_heads(model, ByteTokenizer(), texts)
    finally:
        model.train(was_training)
    return scan_numbers(report), report.profile


class TrainingRecorder:
    """Collects snapshot rows and profiles of every run in ``out`` (resumable: a row recorded again
    for the same encoding, seed and step replaces the old one)."""

    def __init__(self, out: Path, seq_len: int):
        self.out = Path(out)
        self.seq_len = seq_len
        self.path = self.out / "training_profiles.csv"
        (self.out / "profiles").mkdir(parents=True, exist_ok=True)

    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=KEYS)

    def __call__(self, encoding: str, seed: int, valid: np.ndarray):
        texts = snapshot_texts(valid, self.seq_len)
        stem = checkpoint_stem(self.out, encoding, seed).name  # named like the run's checkpoint

        @torch.no_grad()
        def snapshot(model, step: int) -> None:
            row, prof = snapshot_row(model, texts)
            prof.meta.update(model_id=f"{encoding} seed {seed} step {step}", prompt_set="held-out bytes")
            prof.save(self.out / "profiles" / f"{stem}-step{step}.safetensors")
            table = self.table()
            if len(table):
                same = (table.encoding == encoding) & (table.seed == seed) & (table.step == step)
                table = table[~same]
            table = pd.concat([table, pd.DataFrame([{"encoding": encoding, "seed": seed, "step": step, **row}])])
            with atomic_path(self.path) as tmp:
                table.sort_values(KEYS).to_csv(tmp, index=False)

        return snapshot

"""Dynamics stage: how frequency usage and positional heads appear during training
(``ropescope train-prope --profile-every N``). :mod:`~ropescope.dynamics.snapshots` profiles and
scans the model being trained on fixed held-out windows and records one row per snapshot."""

from ropescope.dynamics.snapshots import ByteTokenizer, TrainingRecorder, snapshot_row

__all__ = ["ByteTokenizer", "TrainingRecorder", "snapshot_row"]

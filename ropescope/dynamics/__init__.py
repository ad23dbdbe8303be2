"""Dynamics stage: how frequency usage and positional heads appear during training.
:mod:`~ropescope.dynamics.snapshots` profiles and scans the model being trained by
``ropescope train-prope --profile-every N`` on fixed held-out windows, one row per snapshot;
:mod:`~ropescope.dynamics.revisions` does the same for a model's published training checkpoints
(hub revisions, ``ropescope sweep``)."""

from ropescope.dynamics.revisions import SweepResult, sweep_revisions
from ropescope.dynamics.snapshots import ByteTokenizer, TrainingRecorder, scan_numbers, snapshot_row

__all__ = ["ByteTokenizer", "SweepResult", "TrainingRecorder", "scan_numbers", "snapshot_row", "sweep_revisions"]

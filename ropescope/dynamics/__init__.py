"""Dynamics stage: how frequency usage and positional heads appear during training.
:mod:`~ropescope.dynamics.snapshots` profiles and scans the model being trained by
``ropescope train-prope --profile-every N`` on fixed held-out windows, one row per snapshot;
:mod:`~ropescope.dynamics.revisions` does the same for a model's published training checkpoints
(hub revisions, ``ropescope sweep``)."""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "ByteTokenizer": "ropescope.dynamics.snapshots",
    "SweepResult": "ropescope.dynamics.revisions",
    "TrainingRecorder": "ropescope.dynamics.snapshots",
    "scan_numbers": "ropescope.dynamics.snapshots",
    "snapshot_row": "ropescope.dynamics.snapshots",
    "sweep_revisions": "ropescope.dynamics.revisions",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.dynamics.revisions import SweepResult, sweep_revisions
    from ropescope.dynamics.snapshots import ByteTokenizer, TrainingRecorder, scan_numbers, snapshot_row

__all__ = ["ByteTokenizer", "SweepResult", "TrainingRecorder", "scan_numbers", "snapshot_row", "sweep_revisions"]

"""Profile stage: run prompts through a model under :func:`~ropescope.hooks.capture` and keep the result.

- :mod:`~ropescope.profiling.run`: :func:`profile` (tokenise, batch, forward whole or in KV-cached pieces);
- :mod:`~ropescope.profiling.result`: :class:`Profile` (tidy frame, merge) and its file;
- :mod:`~ropescope.profiling.resume`: checkpoints of a run's statistics, to resume it;
- :mod:`~ropescope.profiling.distributed`: data-parallel merge with ``torch.distributed``;
- :mod:`~ropescope.profiling.summary`: which frequency band holds most of q and k, per layer.
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "Profile": "ropescope.profiling.result",
    "band_shares": "ropescope.profiling.bands",
    "check_profile_options": "ropescope.profiling.run",
    "load_profile": "ropescope.profiling.result",
    "profile": "ropescope.profiling.run",
    "summary_frame": "ropescope.profiling.summary",
    "summary_text": "ropescope.profiling.summary",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.profiling.bands import band_shares
    from ropescope.profiling.result import Profile, load_profile
    from ropescope.profiling.run import check_profile_options, profile
    from ropescope.profiling.summary import summary_frame, summary_text

__all__ = [
    "Profile",
    "band_shares",
    "check_profile_options",
    "load_profile",
    "profile",
    "summary_frame",
    "summary_text",
]

"""Analysis: which heads are positional, which frequencies build them, and a causal test of it.

- (a layer's attention recomputed block by block from post-RoPE q, k lives with the hooks:
  :mod:`~ropescope.hooks.attention`, shared with :mod:`~ropescope.hooks.reducers`);
- :mod:`~ropescope.heads.scores`: offset and sink scores and per-chunk logit attribution, streamed;
- :mod:`~ropescope.heads.scan`: :func:`scan_heads` (the head table, classes, agreement);
- :mod:`~ropescope.heads.causal`: :func:`causal_test` (zero a head's fastest / slowest / random chunks);
- :mod:`~ropescope.heads.views`: one head on one prompt, and the Cauchy-Schwarz table;
- :mod:`~ropescope.heads.triggers`: the search for trigger-token heads.
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "CLASS_ORDER": "ropescope.heads.scan",
    "HeadReport": "ropescope.heads.scan",
    "HeadView": "ropescope.heads.views",
    "POSITIONAL": "ropescope.heads.scan",
    "TriggerHead": "ropescope.heads.triggers",
    "agreement": "ropescope.heads.scan",
    "cauchy_schwarz_table": "ropescope.heads.views",
    "causal_test": "ropescope.heads.causal",
    "check_scan_options": "ropescope.heads.scan",
    "head_view": "ropescope.heads.views",
    "scan_heads": "ropescope.heads.scan",
    "search_trigger_heads": "ropescope.heads.triggers",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.heads.causal import causal_test
    from ropescope.heads.scan import CLASS_ORDER, POSITIONAL, HeadReport, agreement, check_scan_options, scan_heads
    from ropescope.heads.triggers import TriggerHead, search_trigger_heads
    from ropescope.heads.views import HeadView, cauchy_schwarz_table, head_view

__all__ = [
    "CLASS_ORDER",
    "POSITIONAL",
    "HeadReport",
    "HeadView",
    "TriggerHead",
    "agreement",
    "cauchy_schwarz_table",
    "causal_test",
    "check_scan_options",
    "head_view",
    "scan_heads",
    "search_trigger_heads",
]

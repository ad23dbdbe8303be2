"""Analysis: which heads are positional, which frequencies build them, and a causal test of it.

- (a layer's attention recomputed block by block from post-RoPE q, k lives with the hooks:
  :mod:`~ropescope.hooks.attention`, shared with :mod:`~ropescope.hooks.reducers`);
- :mod:`~ropescope.heads.scores`: offset and sink scores and per-chunk logit attribution, streamed;
- :mod:`~ropescope.heads.scan`: :func:`scan_heads` (the head table, classes, agreement);
- :mod:`~ropescope.heads.causal`: :func:`causal_test` (zero a head's fastest / slowest / random chunks);
- :mod:`~ropescope.heads.views`: one head on one prompt, and the Cauchy-Schwarz table;
- :mod:`~ropescope.heads.triggers`: the search for trigger-token heads.
"""

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

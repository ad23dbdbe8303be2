"""Report stage: one self-contained, offline HTML page of a run (usage maps with hover, the sortable
and filterable head table, a per-head view, the summary and the reproduction table).

:mod:`~ropescope.report.content` turns a profile (and, when there is one, a head scan, its causal
test and attention on a prompt) into plain JSON-able data; :mod:`~ropescope.report.run_dir` reads
that data back from a run directory written by ``ropescope profile`` / ``heads`` / ``figures``;
:mod:`~ropescope.report.page` writes the page (inline CSS and JavaScript from ``assets/``, no
network request, no CDN).
"""

from ropescope.report.content import report_data
from ropescope.report.page import render_page, write_report
from ropescope.report.run_dir import read_run

__all__ = ["read_run", "render_page", "report_data", "write_report"]

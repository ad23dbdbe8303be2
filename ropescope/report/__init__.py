"""Report stage: one self-contained, offline HTML page of a run (usage maps with hover, the sortable
and filterable head table, a per-head view, the summary and the reproduction table).

:mod:`~ropescope.report.content` turns a profile (and, when there is one, a head scan, its causal
test and attention on a prompt) into plain JSON-able data; :mod:`~ropescope.report.run_dir` reads
that data back from a run directory written by ``ropescope profile`` / ``heads`` / ``figures``;
:mod:`~ropescope.report.page` writes the page (inline CSS and JavaScript from ``assets/``, no
network request, no CDN).
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "read_run": "ropescope.report.run_dir",
    "render_page": "ropescope.report.page",
    "report_data": "ropescope.report.content",
    "write_report": "ropescope.report.page",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.report.content import report_data
    from ropescope.report.page import render_page, write_report
    from ropescope.report.run_dir import read_run

__all__ = ["read_run", "render_page", "report_data", "write_report"]

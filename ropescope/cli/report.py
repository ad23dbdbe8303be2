"""``ropescope report``: one self-contained HTML page of a run directory (also written by the
``--report`` flag of ``profile``, ``heads`` and ``figures``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ropescope.cli.common import check_spares_inputs, check_writable_parent, echo, user_path
from ropescope.errors import RopescopeError
from ropescope.prompts import load_prompts

REPORT_HELP = "Also write report.html: an interactive page of the run that works offline (see 'ropescope report')."
REPORT_OPTION = typer.Option(False, "--report", help=REPORT_HELP)  # the same --report on profile, heads, figures


def report_command(
    run: Path = typer.Argument(..., help="Run directory written by 'ropescope profile' or 'ropescope heads'."),
    out: Path = typer.Option(None, help="The HTML file to write.", show_default="RUN/report.html"),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file (RUN/report.html is always rewritten)."),
) -> None:
    """Write an interactive HTML report of a run: usage maps with hover, the sortable head table,
    a per-head view (offset scores, chunk norms, causal test, attention on a prompt), the summary and
    the comparison with the paper. One file, no network needed to open it."""
    from ropescope.report import read_run, write_report
    from ropescope.report.run_dir import run_files_read

    run = user_path(run)
    data = read_run(run)
    target = user_path(out) if out is not None else (run if run.is_dir() else run.parent) / "report.html"
    if target.is_dir():
        raise RopescopeError(f"--out {target} is a directory; name an .html file")
    check_spares_inputs(target, run_files_read(run))  # never the page over a table it reads
    if out is not None and target.exists() and not overwrite:
        raise RopescopeError(f"output file {target} already exists; pass --overwrite to replace it")
    check_writable_parent(target)
    write_report(data, target)
    echo(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB); open it in any browser, offline")


def write_figures_report(context) -> Path:
    """``report.html`` in a ``figures`` output directory, from the run's own profile and head scan
    (computed now if no entry needed them) and its causal test CSV when the HEADS entry wrote one."""
    from ropescope.heads.views import prompt_attention
    from ropescope.report import report_data, write_report
    from ropescope.report.run_dir import read_causal

    model = context.model()
    scan = context.heads()
    causal_path = context.out / f"causal_test_{context.name}.csv"
    data = report_data(
        context.profile(),
        heads=scan.table,
        agreement=scan.agreement(),
        causal=read_causal(causal_path, scan.profile.n_layers, int(scan.profile.meta["n_heads"]))
        if causal_path.is_file()
        else None,
        attention=prompt_attention(model, model.tokenizer, load_prompts(context.prompts)[0]),
        threshold=scan.threshold,
    )
    return write_report(data, context.out / "report.html")

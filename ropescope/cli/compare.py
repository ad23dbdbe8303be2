"""``ropescope compare A B``: difference and ratio maps and rank correlations of two saved profiles."""

from __future__ import annotations

from pathlib import Path

import typer

from ropescope.cli.choices import FORMAT_OPTION, Alignment, TableFormat
from ropescope.cli.common import OVERWRITE_HELP, check_out, echo, output_directory, user_path
from ropescope.files import write_table

BY_HELP = (
    "How to align the two: geometry (same model geometry, e.g. two prompt sets or dtypes), chunk (same "
    "layer and chunk counts, by chunk index), relative (any two models, by relative depth and chunk position)."
)


def compare_command(
    first: Path = typer.Argument(..., help="Profile a: a run directory or .safetensors file."),
    second: Path = typer.Argument(..., help="Profile b, compared with a."),
    by: Alignment = typer.Option("geometry", help=BY_HELP),
    out: Path = typer.Option(Path("runs/compare"), help="Output directory."),
    overwrite: bool = typer.Option(False, help=OVERWRITE_HELP),
    table_format: TableFormat = FORMAT_OPTION,
) -> None:
    """Compare two profiles: per-(layer, chunk) difference and ratio maps of q/k/v usage and the
    Spearman rank correlation of chunk usage per layer and overall."""
    import pandas as pd

    from ropescope.plots.compare import comparison_figure
    from ropescope.plots.style import save_figure
    from ropescope.profiling.compare import compare_profiles
    from ropescope.profiling.result import load_profile

    first, second, out = user_path(first), user_path(second), user_path(out)
    by, table_format = Alignment(by).value, TableFormat(table_format).value
    check_out(out, overwrite, inputs=(first, second))
    result = compare_profiles(load_profile(first), load_profile(second), by=by)
    with output_directory(out) as tmp:
        maps = [frame.assign(tensor=tensor) for tensor, frame in result.maps.items()]
        write_table(pd.concat(maps, ignore_index=True), tmp / "compare_maps", table_format)
        write_table(result.correlations, tmp / "compare_spearman", table_format)
        save_figure(comparison_figure(result), tmp / "compare")
    echo(f"a = {result.a_name}\nb = {result.b_name}\naligned by {by}")
    for tensor, value in result.overall.items():
        part = result.correlations[result.correlations.tensor == tensor].spearman
        ratio = result.maps[tensor].ratio
        echo(
            f"{tensor}: Spearman over all (layer, chunk) cells {value:.3f}; per layer {part.min():.3f} to "
            f"{part.max():.3f}; median ratio b/a {ratio.median():.3f}"
        )
    echo(f"wrote {out}/ (compare_maps.{table_format}, compare_spearman.{table_format}, compare.png)")

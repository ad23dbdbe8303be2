"""Option choices the command line declares to typer, so ``--help`` lists them and typer refuses
anything else before any work; each is built from the library's own list."""

from enum import Enum

import typer

from ropescope.options import ALIGNMENTS, DTYPE_NAMES, ON_NONFINITE, TABLE_FORMATS

DType = Enum("DType", {name: name for name in DTYPE_NAMES}, type=str)
OnNonfinite = Enum("OnNonfinite", {name: name for name in ON_NONFINITE}, type=str)
TableFormat = Enum("TableFormat", {name: name for name in TABLE_FORMATS}, type=str)
FORMAT_OPTION = typer.Option(
    "csv", "--format", help="Format of the tables written (the CSVs the report reads are always written too)."
)
Alignment = Enum("Alignment", {name: name for name in ALIGNMENTS}, type=str)

"""fig06_positional_chunk_norms (see ropescope.figures.FIGURES["F6"])."""

from common import run

run("F6")

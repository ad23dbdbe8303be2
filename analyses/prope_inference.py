"""prope_inference (see ropescope.figures.FIGURES["PROPE"])."""

from common import run

run("PROPE")

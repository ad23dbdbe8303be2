"""fig10_11_second_family (see ropescope.figures.FIGURES["F10"])."""

from common import run

run("F10")

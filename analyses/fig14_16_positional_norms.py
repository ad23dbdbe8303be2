"""fig14_16_positional_norms (see ropescope.figures.FIGURES["F14"])."""

from common import run

run("F14")

"""fig09_fixed_gaussian_pair (see ropescope.figures.FIGURES["F9"])."""

from common import run

run("F9")

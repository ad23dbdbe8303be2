"""fig19_domains (see ropescope.figures.FIGURES["F19"])."""

from common import run

run("F19")

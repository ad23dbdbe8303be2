"""fig13_value_usage (see ropescope.figures.FIGURES["F13"])."""

from common import run

run("F13")

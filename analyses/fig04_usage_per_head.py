"""fig04_usage_per_head (see ropescope.figures.FIGURES["F4"])."""

from common import run

run("F4")

"""fig03_usage_per_layer (see ropescope.figures.FIGURES["F3"])."""

from common import run

run("F3")

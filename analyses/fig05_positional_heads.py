"""fig05_positional_heads (see ropescope.figures.FIGURES["F5"])."""

from common import run

run("F5")

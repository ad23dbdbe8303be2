"""fig02_decay (see ropescope.figures.FIGURES["F2"])."""

from common import run

run("F2")

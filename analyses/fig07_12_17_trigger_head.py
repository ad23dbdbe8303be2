"""fig07_12_17_trigger_head (see ropescope.figures.FIGURES["F7"])."""

from common import run

run("F7")

"""table02_t2_from_scratch (see ropescope.figures.FIGURES["T2"])."""

from common import run

run("T2")

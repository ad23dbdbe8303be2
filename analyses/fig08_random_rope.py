"""fig08_random_rope (see ropescope.figures.FIGURES["F8"])."""

from common import run

run("F8")

"""theory_propositions (see ropescope.figures.FIGURES["THEORY"])."""

from common import run

run("THEORY")

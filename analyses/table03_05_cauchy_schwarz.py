"""table03_05_cauchy_schwarz (see ropescope.figures.FIGURES["T3"])."""

from common import run

run("T3")

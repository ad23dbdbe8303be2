"""fig18_semantic_head (see ropescope.figures.FIGURES["F18"])."""

from common import run

run("F18")

"""heads_classes_and_causal_test (see ropescope.figures.FIGURES["HEADS"])."""

from common import run

run("HEADS")

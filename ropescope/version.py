"""The installed version of ropescope, read from the package metadata (``pyproject.toml``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ropescope")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

# The transformers release the exactness tests last passed on (requirements/constraints.txt pins the
# same; scripts/survey_newest.sh moves both, on purpose); pyproject.toml allows only the releases
# the tests passed on.
TESTED_TRANSFORMERS = "5.23.0"

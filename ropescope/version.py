"""The installed version of ropescope, read from the package metadata (``pyproject.toml``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ropescope")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

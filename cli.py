"""Run the ropescope command line from a checkout: ``python cli.py profile``."""

from ropescope.cli import main

if __name__ == "__main__":
    main()

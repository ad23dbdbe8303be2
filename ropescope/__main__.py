from ropescope.cli import main

main()

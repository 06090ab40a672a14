"""`python -m perfctl ...` is the same as the `perfctl` command."""

from perfctl.cli import main

main()

"""`python -m apiary.cli`: the `apiary` command."""

from apiary.cli import main

main()

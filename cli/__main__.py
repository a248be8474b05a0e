"""`python -m cli ...`: the `accounts` command."""

from cli import main

main()

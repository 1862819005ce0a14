"""`python -m jackpot.bench`."""

from jackpot.bench.cli import main

main()

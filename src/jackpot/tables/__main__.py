"""`python -m jackpot.tables`: the `jackpot-tables` command."""

import sys

from jackpot.tables.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The errors a user can cause, shown as one line (the full traceback with HYDRA_FULL_ERROR=1)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from jackpot.config import ConfigError
from jackpot.data import DatasetError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DatasetError)


def format_user_error(err: BaseException) -> str:
    kind = "config error" if isinstance(err, ConfigError) else "data error"
    return f"jackpot: {kind}: {err}"


def exit_with_user_error(err: BaseException) -> NoReturn:
    """Stop before any work starts: one line on stderr and exit code 2; the traceback with HYDRA_FULL_ERROR=1."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(format_user_error(err), file=sys.stderr)
    sys.exit(2)

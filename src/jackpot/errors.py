"""The errors a user can cause, shown as one line (the full traceback with HYDRA_FULL_ERROR=1)."""

from __future__ import annotations

from jackpot.config import ConfigError
from jackpot.data import DatasetError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DatasetError)


def format_user_error(err: BaseException) -> str:
    kind = "config error" if isinstance(err, ConfigError) else "data error"
    return f"jackpot: {kind}: {err}"

"""The one error type for dataset problems, so the trainer can report them before any training starts."""

from __future__ import annotations


class DatasetError(RuntimeError):
    """Dataset files are missing, corrupted or unreadable; the message names the config key to change."""

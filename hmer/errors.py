"""The project's own exception types: every bad input ends in one of these, naming its source."""

from __future__ import annotations

from pathlib import Path


class HmerError(Exception):
    """Base class for all errors raised on purpose by hmer."""


class DataError(HmerError):
    """Bad input data: a file, a line of a table, a label.

    ``source`` names the file (and ``line`` the 1-based line) so that the message can be acted on.
    """

    def __init__(self, message: str, source: str | Path | None = None, line: int | None = None):
        self.source = None if source is None else str(source)
        self.line = line
        where = ""
        if self.source is not None:
            where = self.source + (f":{line}" if line is not None else "") + ": "
        super().__init__(where + message)


class LatexError(DataError):
    """A LaTeX label that cannot be turned into canonical tokens."""


class ConfigError(HmerError):
    """A config file or override that names an unknown field or holds a bad value."""


class CheckpointError(HmerError):
    """A checkpoint that is truncated, incomplete, or does not match the model or vocabulary."""

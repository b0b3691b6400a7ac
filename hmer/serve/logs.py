"""The server's log lines, on stderr, with control characters escaped.

A request line, a header or a file name can carry any byte; written raw to a terminal, an escape
sequence would be obeyed (recolouring it, moving the cursor, rewriting earlier lines) and a line
break would forge a log line. Every message is escaped (``\\x1b``, ``\\n``) before it is written;
tracebacks, which only the server writes, keep their lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

__all__ = ["EscapedAccessFormatter", "EscapedFormatter", "escape", "log_config"]

#: C0 and C1 control characters and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The logger of hmer's own server messages.
LOGGER = "hmer.serve"


def escape(text: str) -> str:
    """``text`` with every control character written as ``\\xNN``."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


class EscapedFormatter(DefaultFormatter):
    """uvicorn's message format, escaped (:func:`escape`), never coloured."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


class EscapedAccessFormatter(AccessFormatter):
    """uvicorn's request line format, escaped (:func:`escape`), never coloured."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def log_config(access_log: bool = True) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn: its messages, each request (when
    ``access_log``) and hmer's own, on stderr, prefixed ``hmer serve:``."""
    prefix = "hmer serve: %(levelprefix)s"
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": f"{__name__}.EscapedFormatter",
                "fmt": f"{prefix} %(message)s",
                "use_colors": False,
            },
            "access": {
                "()": f"{__name__}.EscapedAccessFormatter",
                "fmt": f'{prefix} %(client_addr)s "%(request_line)s" %(status_code)s',
                "use_colors": False,
            },
        },
        "handlers": {
            "default": {**handler, "formatter": "default"},
            "access": {**handler, "formatter": "access"},
        },
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {
                "handlers": ["access"] if access_log else [],
                "level": "INFO",
                "propagate": False,
            },
            LOGGER: quiet,
        },
    }

"""Where the daemon's log records go: stderr, as text or one JSON object per line.

Only the `eventstore` loggers are configured (every logger of the package
sits under it); a record's `extra` fields, such as `execution_id`, are kept
as keys of its JSON object.
"""

from __future__ import annotations

import enum
import logging
import sys
from typing import Final

from pythonjsonlogger.json import JsonFormatter


class LogFormat(enum.StrEnum):
    """How log records are written."""

    TEXT = "text"
    JSON = "json"


class LogLevel(enum.StrEnum):
    """The lowest level written."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(log_format: LogFormat, level: LogLevel) -> None:
    """Send the `eventstore` loggers' records at `level` and above to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={
                    "asctime": "time",
                    "levelname": "level",
                    "name": "logger",
                },
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("eventstore")
    root.handlers[:] = [handler]
    root.setLevel(level.value)
    root.propagate = False

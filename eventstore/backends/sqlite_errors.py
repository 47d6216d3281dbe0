"""How SQLite's errors are sorted: by the primary result code of each sqlite3 error.

Transient: the file is busy or locked by another connection, an I/O error,
a full disk. Permanent: a constraint violation, a file that cannot be
opened, is not a database or is read-only, and everything else.
Result codes: https://www.sqlite.org/rescode.html
"""

from __future__ import annotations

import sqlite3
from typing import Final

from sqlalchemy import exc as sa_exc

from eventstore import errors
from eventstore.backends.driver_errors import (
    SQLALCHEMY_DRIVER_ERRORS,
    driver_causes,
    generic_database_error,
)

# The exceptions of the driver and of the operating system under it.
DRIVER_ERRORS: Final = (sqlite3.Error, OSError, *SQLALCHEMY_DRIVER_ERRORS)
IMMUTABLE_LOG_ERROR: Final = "SQLITE_CONSTRAINT_TRIGGER"  # the log's RAISE(ABORT)
APPEND_GUARD_PREFIX: Final = "eventstore: "  # the append guards' RAISE messages
CONFLICT_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
UNAVAILABLE_CODES: Final = frozenset({sqlite3.SQLITE_IOERR})
CANNOT_OPEN_CODES: Final = frozenset(
    {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY}
)
TRANSIENT_CODES: Final = frozenset({sqlite3.SQLITE_FULL})
PRIMARY_CODE_MASK: Final = 0xFF  # extended codes carry the primary one in the low byte


def classify(
    exc: BaseException, *, url: str, immutable_reason: str
) -> errors.EventStoreError | None:
    """The store's error for an SQLite driver error; None for any other exception."""
    if not isinstance(exc, DRIVER_ERRORS):
        return None
    for cause in driver_causes(exc):
        if isinstance(cause, sqlite3.Error):
            return _sorted(cause, url=url, immutable_reason=immutable_reason)
        if isinstance(cause, OSError | sa_exc.DisconnectionError):
            return errors.DatabaseUnavailable(url=url, reason=_first_line(cause))
        if isinstance(cause, sa_exc.TimeoutError):  # no pooled connection in time
            return generic_database_error(cause, transient=True)
    return generic_database_error(exc)


def _sorted(
    error: sqlite3.Error, *, url: str, immutable_reason: str
) -> errors.EventStoreError:
    if getattr(error, "sqlite_errorname", None) == IMMUTABLE_LOG_ERROR:
        # Our own triggers' constant messages: the append guards (migration
        # 0006) refuse a row; the others refuse changing the log.
        message = str(error)
        if message.startswith(APPEND_GUARD_PREFIX):
            return errors.ValidationError(
                "the log refused the row: " + message.removeprefix(APPEND_GUARD_PREFIX)
            )
        return errors.AppendOnlyViolation(
            stream_id=None, position=None, reason=immutable_reason
        )
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & PRIMARY_CODE_MASK if isinstance(code, int) else None
    if primary in CONFLICT_CODES:
        return errors.DatabaseConflict(
            f"database error: {_name(error)}: {_first_line(error)}"
        )
    if primary in UNAVAILABLE_CODES:
        return errors.DatabaseUnavailable(url=url, reason=_first_line(error))
    if primary in CANNOT_OPEN_CODES:
        return errors.DatabaseUnavailable(
            url=url, reason=_first_line(error), transient=False
        )
    return generic_database_error(error, transient=primary in TRANSIENT_CODES)


def _name(error: sqlite3.Error) -> str:
    name = getattr(error, "sqlite_errorname", None)
    return name if isinstance(name, str) else type(error).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

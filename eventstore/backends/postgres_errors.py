"""How PostgreSQL's errors are sorted: by SQLSTATE and by asyncpg's exception classes.

Transient errors (trying again may succeed) are a lost or refused
connection, a server shutting down or starting, too many connections, a
serialization failure, a deadlock, a lock not had in time, a cancelled
statement. Everything else the server or the driver raises is permanent:
a constraint violation, a value out of range, a missing privilege.
SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
"""

from __future__ import annotations

from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc

from eventstore import errors
from eventstore.backends.driver_errors import (
    SQLALCHEMY_DRIVER_ERRORS,
    driver_causes,
    generic_database_error,
)
from eventstore.redaction import redact_url

# The exceptions of the driver and of the operating system under it.
DRIVER_ERRORS: Final = (
    OSError,  # refused, reset, unknown host; TimeoutError (asyncio's too) is one
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    *SQLALCHEMY_DRIVER_ERRORS,
)
# The server refused this login or database: another try is refused alike.
LOGIN_REFUSED_SQLSTATES: Final = frozenset({"3D000", "28000", "28P01"})
# 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
# 53300 too_many_connections (class 08, connection exceptions, too).
UNAVAILABLE_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})
# 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available.
CONFLICT_SQLSTATES: Final = frozenset({"40001", "40P01", "55P03"})
# 57014 query_canceled (statement_timeout, pg_cancel_backend); class 53,
# insufficient resources (disk full, out of memory), may pass too.
TRANSIENT_SQLSTATES: Final = frozenset({"57014"})
TRANSIENT_CLASSES: Final = frozenset({"53"})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error, also when SQLAlchemy wrapped it."""
    for cause in driver_causes(exc):
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def classify(exc: BaseException, *, url: str) -> errors.EventStoreError | None:
    """The store's error for a PostgreSQL driver error; None for any other exception."""
    if not isinstance(exc, DRIVER_ERRORS):
        return None
    code = sqlstate(exc)
    if code is not None:
        if code in LOGIN_REFUSED_SQLSTATES:
            return errors.DatabaseUnavailable(
                url=url, reason=_first_line(exc), transient=False
            )
        if code.startswith("08") or code in UNAVAILABLE_SQLSTATES:
            return errors.DatabaseUnavailable(url=url, reason=_first_line(exc))
        if code in CONFLICT_SQLSTATES:
            return errors.DatabaseConflict(_described(exc))
        if code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_CLASSES:
            return generic_database_error(_innermost(exc), transient=True)
        return generic_database_error(_innermost(exc))
    for cause in driver_causes(exc):
        if isinstance(cause, asyncpg.OutdatedSchemaCacheError):
            # A table changed under a prepared statement (a rebuild's swap).
            return errors.DatabaseConflict(_described(cause))
        if isinstance(cause, asyncpg.ClientConfigurationError):
            # A connection option of the URL is wrong (?sslmode=bogus): the
            # user fixes the URL, no retry helps.
            return errors.ConfigurationError(
                f"invalid option in the database URL {redact_url(url)}: "
                f"{_first_line(cause)}"
            )
        if isinstance(cause, asyncpg.DataError):
            return generic_database_error(cause)
        # A connection lost mid-protocol surfaces as a plain InterfaceError
        # ("connection is closed") or an InternalClientError ("cannot switch
        # to state 12"): either way the connection is gone.
        if isinstance(
            cause,
            OSError
            | asyncpg.InterfaceError
            | asyncpg.InternalClientError
            | asyncpg.PostgresConnectionError
            | sa_exc.DisconnectionError,
        ):
            return errors.DatabaseUnavailable(url=url, reason=_first_line(cause))
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return errors.DatabaseUnavailable(url=url, reason=_first_line(cause))
        if isinstance(cause, sa_exc.TimeoutError):  # no pooled connection in time
            return generic_database_error(cause, transient=True)
    return generic_database_error(_innermost(exc))


def _innermost(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's wrapping (its name says most)."""
    *_, last = driver_causes(exc)
    return last


def _described(exc: BaseException) -> str:
    inner = _innermost(exc)
    return f"database error: {type(inner).__name__}: {_first_line(inner)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

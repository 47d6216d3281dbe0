"""Helpers both backends use to sort driver errors into the store's own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy import exc as sa_exc

from eventstore import errors

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

# The SQLAlchemy errors that stand for the database or its connections (a
# DBAPIError wraps the driver's own error; the others come from the pool). The
# rest of SQLAlchemy's tree (InvalidRequestError, a StatementError wrapping a
# Python error raised while binding a value) means a bug, not a database fault.
SQLALCHEMY_DRIVER_ERRORS: Final = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def driver_causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: a DBAPIError's driver error, then each `__cause__`."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        if isinstance(seen, sa_exc.DBAPIError) and seen.orig is not None:
            seen = seen.orig
        else:
            seen = seen.__cause__


def generic_database_error(
    exc: BaseException, *, transient: bool = False
) -> errors.DatabaseError:
    """A DatabaseError for a driver error the backend does not sort further."""
    text = f"database error: {type(exc).__name__}: {exc}".strip().splitlines()[0]
    return errors.DatabaseError(text, transient=transient)


def stream_type_refused(
    stream_id: UUID, held: str, given: str
) -> errors.ValidationError:
    """The append guard's refusal of a row not of its stream's type (migration 0008)."""
    return errors.ValidationError(
        f"stream {stream_id} holds {held} events: it cannot take {given} events "
        "(a stream keeps the type of its first event)"
    )

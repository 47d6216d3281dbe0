"""Times the store accepts, and their one stored text form.

Both databases store every UTC time from 0001-01-01T00:00:00.000001Z to
9999-12-31T23:59:59.999998Z faithfully: Python's datetime spans one
microsecond more at each end, but asyncpg writes those two instants as
PostgreSQL's -infinity and infinity (and reads them back without a zone).
A time must carry its offset, and must lie in that range once converted to
UTC. Texts always have four-digit years:
`strftime("%Y")` writes year 1 as "1", which PostgreSQL reads as 2001 and
SQLite's readers cannot parse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from eventstore import errors

EARLIEST: Final = datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
LATEST: Final = datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
_RANGE: Final = "0001-01-01T00:00:00.000001Z to 9999-12-31T23:59:59.999998Z"


def as_utc(moment: object, what: str) -> datetime:
    """`moment` in UTC.

    Raises:
        ValidationError: not a timezone-aware datetime, or outside the range
            once in UTC (named `what` in the message).
    """
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise errors.ValidationError(
            f"invalid {what}: a timezone-aware datetime is required"
        )
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise errors.ValidationError(
            f"invalid {what}: {moment.isoformat()} lies outside {_RANGE} "
            "(the times both databases keep as given)"
        )
    return utc


def utc_text(moment: datetime, *, sep: str = "T") -> str:
    """``YYYY-MM-DD<sep>HH:MM:SS.ffffff`` in UTC, the year zero-padded."""
    if moment.tzinfo is UTC:  # as the drivers return times: only the offset to cut
        return moment.isoformat(sep=sep, timespec="microseconds")[:-6]
    return (
        moment.astimezone(UTC)
        .replace(tzinfo=None)
        .isoformat(sep=sep, timespec="microseconds")
    )

"""The one parser of durations, times and log positions given as text.

Every command-line option that takes one (`cleanup --stale-after/
--pending-after/--archive-before`, `audit --as-of`, `list --since`) and
every query parameter of the console goes through here, so each refuses the
same way: a `ValidationError` naming the option and the value (exit code 2),
never an OverflowError from a value the datetime types or the databases
cannot hold.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from eventstore import errors
from eventstore.audit import AsOf

if TYPE_CHECKING:
    from collections.abc import Iterable

_DURATION: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_POSITION: Final = re.compile(r"^[0-9]+$")
MAX_DURATION: Final = timedelta(days=36525)
"""100 years: "that long before now" stays a time both databases hold."""
MAX_POSITION: Final = 2**63 - 1
"""The largest position the log's bigint column can hold."""
_MAX_POSITION_DIGITS: Final = len(str(MAX_POSITION))
SHOWN_LENGTH: Final = 40
"""How much of a bad value an error line quotes."""


def parse_duration(text: str, option: str) -> timedelta:
    """`90`, `90s`, `15m`, `2h`, `7d`, `1.5h` or `250ms` as a timedelta.

    Raises:
        ValidationError: anything else, zero, or more than 100 years.
    """
    match = _DURATION.match(text)
    if match is None:
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: a positive duration such as 30s, 15m, 2h "
            "or 7d"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: at most {MAX_DURATION.days}d (100 years)"
        )
    duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: a positive duration such as 30s, 15m, 2h "
            "or 7d"
        )
    return duration


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time with an offset, e.g. 2026-01-31T00:00:00Z, in UTC.

    Raises:
        ValidationError: anything else, or a time that is not between the
            years 1 and 9999 in UTC.
    """
    moment = _iso_time(text)
    if moment is None:
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: an ISO 8601 time with offset, "
            "e.g. 2026-01-31T00:00:00Z"
        )
    return _in_utc(moment, text, option)


def parse_position(text: str, option: str) -> int:
    """A position in the log: an integer from 0 to 2**63 - 1.

    Raises:
        ValidationError: anything else.
    """
    value = text.strip()
    if not _POSITION.match(value):
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: a position (an integer from 0)"
        )
    if len(value.lstrip("0")) > _MAX_POSITION_DIGITS or int(value) > MAX_POSITION:
        raise errors.ValidationError(
            f"invalid {option} {_shown(value)}: a position is at most {MAX_POSITION}"
        )
    return int(value)


def parse_as_of(text: str, option: str = "--as-of") -> AsOf:
    """A bare integer is a position; an ISO 8601 time with an offset is a time.

    Raises:
        ValidationError: neither, or out of range.
    """
    if _POSITION.match(text.strip()):
        return AsOf(position=parse_position(text, option))
    moment = _iso_time(text)
    if moment is None:
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: a position or an ISO 8601 time "
            "with offset"
        )
    return AsOf(time=_in_utc(moment, text, option))


def parse_since(text: str, option: str) -> datetime:
    """A DURATION (that long before now) or an ISO 8601 time with offset.

    Raises:
        ValidationError: neither, or out of range.
    """
    if _DURATION.match(text):
        return datetime.now(UTC) - parse_duration(text, option)
    return parse_time(text, option)


def _iso_time(text: str) -> datetime | None:
    """The text as an ISO 8601 time with an offset, or None."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def _in_utc(moment: datetime, text: str, option: str) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+05:00 is in the year 0 in UTC.
        raise errors.ValidationError(
            f"invalid {option} {_shown(text)}: the time is out of range "
            "(0001-01-01 to 9999-12-31 in UTC)"
        ) from None


def _shown(text: str) -> str:
    """The value for an error line: quoted, and cut short if long."""
    if len(text) <= SHOWN_LENGTH:
        return repr(text)
    return f"{text[:SHOWN_LENGTH]!r}... ({len(text)} characters)"


def parse_label_pairs(
    pairs: Iterable[str], *, separator: str, option: str
) -> dict[str, str] | None:
    """Label pairs such as ``customer=42`` (a separator per caller) as a mapping.

    The store checks the keys and values themselves; None when none given.

    Raises:
        ValidationError: a pair without the separator, or a key given twice.
    """
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(separator)
        if not sep:
            raise errors.ValidationError(
                f"invalid {option} {_shown(pair)}: KEY{separator}VALUE"
            )
        if key in labels:
            raise errors.ValidationError(
                f"invalid {option} {_shown(pair)}: {key} given twice"
            )
        labels[key] = value
    return labels or None

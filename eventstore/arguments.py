"""Checks of what callers pass to the public API, each refusing with a ValidationError.

Python's own errors (a TypeError from a misplaced string, a ValueError from
``dict("lots")``, an OverflowError from a driver) would tell a caller nothing
they could branch on. Every check here names the argument it refuses, and
runs before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator

from eventstore import errors

INT32_MAX: Final = 2**31 - 1  # versions, attempts: the columns are 32-bit
INT64_MAX: Final = 2**63 - 1  # positions: the column is 64-bit
ORDER_KEY_MAX: Final = 2**95 - 1  # a checkpoint's transaction part: epoch over xid
BATCH_MAX: Final = 100_000  # events held in memory per read


def text_problem(value: str) -> str | None:
    """What makes a string unstorable on either database, or None.

    PostgreSQL refuses NUL in text (SQLite would keep it, so both refuse it
    alike), and a lone surrogate has no UTF-8 form at all.
    """
    if "\x00" in value:
        return "must not contain NUL (U+0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain a lone surrogate"
    return None


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)  # pydantic names the field
    return value


StoredText = Annotated[str, AfterValidator(_storable)]
"""A string field that both databases can store as given."""


def checked_text(name: str, value: object, *, max_length: int | None = None) -> str:
    """A non-empty string both databases can store.

    Raises:
        ValidationError: not a string, empty, too long, or a NUL or lone surrogate in it.
    """
    limit = f" of at most {max_length} characters" if max_length else ""
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(
            f"invalid {name}: a non-empty string{limit} is required"
        )
    if max_length is not None and len(value) > max_length:
        raise errors.ValidationError(
            f"invalid {name}: a non-empty string{limit} is required"
        )
    problem = text_problem(value)
    if problem is not None:
        raise errors.ValidationError(f"invalid {name}: it {problem}")
    return value


def checked_int(name: str, value: object, *, low: int, high: int) -> int:
    """An integer (not a bool) from `low` to `high`.

    Raises:
        ValidationError: anything else.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise errors.ValidationError(
            f"invalid {name} {_shown(value)}: an integer from {low} to {high} is required"
        )
    return value


def checked_mapping(name: str, value: object) -> Mapping[str, object]:
    """A mapping, or None as an empty one.

    Raises:
        ValidationError: anything else (a list, a string ...).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.ValidationError(
            f"invalid {name}: a mapping is required, not {type(value).__name__}"
        )
    return value


def checked_timeout(value: object) -> float | None:
    """Seconds to wait: None (for ever), or a number >= 0 (infinity allowed).

    Raises:
        ValidationError: NaN, a negative number, or not a number.
    """
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond the floats: as long as infinity
            seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds) or seconds < 0:
        raise errors.ValidationError(
            f"invalid timeout {_shown(value)}: None or a number of seconds >= 0 is required"
        )
    return seconds


def checked_moment(name: str, value: object) -> datetime | None:
    """None or a timezone-aware datetime.

    Raises:
        ValidationError: a naive datetime, or anything else.
    """
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise errors.ValidationError(
            f"invalid {name} {_shown(value)}: a timezone-aware datetime is required"
        )
    return value


def _shown(value: object) -> str:
    # Enough to recognise the value; a 4,301-digit integer cannot even be printed.
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value.bit_length() > 64
    ):
        return f"(an integer of {value.bit_length()} bits)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."

"""Canonical JSON and the per-stream hash chain (DESIGN §6), pure code.

The canonical form of a JSON value is RFC 8785 (JCS), widened for integers
beyond the doubles: keys sorted by their UTF-16 code units, strings escaping
only what JSON requires, numbers in the ECMAScript shortest round-trip form.
The form depends only on the mathematical value of each number, never on
how it was spelled or typed, because PostgreSQL `jsonb` keeps the value but
not the spelling (`1e21` comes back as `1000000000000000000000`, `1.0` as
`1`). So an integer whose value is exactly the shortest decimal of a double
is written as that double (`10**21` as `1e+21`, as JCS does), and any other
integer exactly in decimal (JCS would round those beyond 2**53; within that
range the two agree). Parsing a stored value and encoding it again gives
the same bytes on both backends, which lets an auditor recompute every hash
from the rows alone.

The chain: ``hash_n = sha256(hash_{n-1} || canonical(event_n))`` with a
genesis of 32 zero bytes, where ``canonical(event)`` is the canonical JSON of
the object with the keys ``data, event_id, metadata, occurred_at,
schema_version, stream_id, type, version`` (ids as lowercase hyphenated
UUIDs, ``occurred_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final, cast

from eventstore import errors

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from eventstore.events.envelope import JSONObject, JSONValue, RecordedEvent

GENESIS_HASH: Final = bytes(32)
# ECMAScript prints numbers of this magnitude and above with an exponent.
DOUBLE_DIGITS_LIMIT: Final = 10**21
MAX_DEPTH: Final = 64

_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def canonical_json(value: object) -> str:
    """Encode a JSON value in the canonical form.

    Args:
        value: dicts with str keys, lists or tuples, str, int, finite float,
            bool or None, nested at most 64 deep.

    Returns:
        The canonical text.

    Raises:
        ValidationError: the value is not JSON (a set, a datetime, a NaN, a
            non-str key, a NUL character or a lone surrogate in a string).
    """
    parts: list[str] = []
    _encode(value, parts, "$", 0)
    return "".join(parts)


def _encode(value: object, out: list[str], path: str, depth: int) -> None:
    # Exact type checks: bool is an int subclass, and str/int subclasses
    # (enums) would round-trip as their plain values anyway.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value, path))
    elif isinstance(value, int):
        out.append(_encode_int(int(value)))
    elif isinstance(value, float):
        out.append(_encode_float(value, path))
    elif isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise errors.ValidationError(f"{path}: nested deeper than {MAX_DEPTH}")
        for key in value:
            if not isinstance(key, str):
                raise errors.ValidationError(f"{path}: key {key!r} is not a string")
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_key)):
            if index:
                out.append(",")
            out.append(_encode_str(key, path))
            out.append(":")
            _encode(value[key], out, f"{path}.{key}", depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise errors.ValidationError(f"{path}: nested deeper than {MAX_DEPTH}")
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, f"{path}[{index}]", depth + 1)
        out.append("]")
    else:
        raise errors.ValidationError(
            f"{path}: {type(value).__name__} is not a JSON value"
        )


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode_str(text: str, path: str) -> str:
    if "\x00" in text:
        # PostgreSQL jsonb cannot store U+0000; refuse it on both backends alike.
        raise errors.ValidationError(f"{path}: strings may not contain NUL (U+0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise errors.ValidationError(f"{path}: string has a lone surrogate") from exc
    chunks = ['"']
    for char in text:
        if char in _ESCAPES:
            chunks.append(_ESCAPES[char])
        elif char < " ":
            chunks.append(f"\\u{ord(char):04x}")
        else:
            chunks.append(char)
    chunks.append('"')
    return "".join(chunks)


def _encode_int(number: int) -> str:
    if -DOUBLE_DIGITS_LIMIT < number < DOUBLE_DIGITS_LIMIT:
        return str(number)  # what ECMAScript prints for these values too
    try:
        nearest = float(number)
    except OverflowError:
        return str(number)
    if Decimal(repr(nearest)) == number:
        return _encode_float(nearest, "$")
    return str(number)


def _encode_float(number: float, path: str) -> str:
    """ECMAScript Number::toString, as RFC 8785 §3.2.2.3 requires."""
    if not math.isfinite(number):
        raise errors.ValidationError(f"{path}: {number} is not a finite number")
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that round-trip: read them as an integer
    # `digits` times 10**scale, without leading or trailing zeros.
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = (whole + fraction).lstrip("0")
    digits = all_digits.rstrip("0")
    scale = int(exp_text or "0") - len(fraction) + len(all_digits) - len(digits)
    k = len(digits)
    n = k + scale  # 10**(n-1) <= value < 10**n, as ECMAScript names them
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa_text = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa_text}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def parse_json(text: str) -> JSONValue:
    """Parse stored JSON the way PostgreSQL jsonb reads numbers: by value.

    An integral number written with an exponent (``1e+30``) becomes an int,
    as jsonb makes it, so both backends hand back the same values.
    """
    return cast("JSONValue", json.loads(text, parse_float=_number))


def parse_json_object(text: str) -> JSONObject:
    """Parse a stored JSON object (data, metadata) by value.

    Raises:
        IntegrityError: the stored text is not a JSON object.
    """
    value = parse_json(text)
    if not isinstance(value, dict):
        raise errors.IntegrityError(
            stream_id=None,
            position=None,
            reason=f"stored JSON is not an object: {text[:40]}",
        )
    return value


def _number(text: str) -> int | float:
    value = Decimal(text)
    if ("e" in text or "E" in text) and value == value.to_integral_value():
        return int(value)
    return float(text)


def format_occurred_at(moment: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds, a trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_event(
    *,
    stream_id: UUID,
    version: int,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    data_json: str,
    metadata_json: str,
    occurred_at: datetime,
) -> str:
    """The canonical JSON of one event, from already canonical data and metadata.

    The keys are written in their sorted order by hand, so the (possibly
    large) data is not encoded twice. ``event_type`` is a plain identifier
    (checked by the envelope), so it needs no escaping.
    """
    return (
        f'{{"data":{data_json},"event_id":"{event_id}","metadata":{metadata_json},'
        f'"occurred_at":"{format_occurred_at(occurred_at)}",'
        f'"schema_version":{schema_version},"stream_id":"{stream_id}",'
        f'"type":"{event_type}","version":{version}}}'
    )


def chain_hash(previous: bytes, canonical: str) -> bytes:
    """``sha256(previous || utf8(canonical))``: the hash of the next event."""
    return hashlib.sha256(previous + canonical.encode("utf-8")).digest()


def event_hash(previous: bytes, event: RecordedEvent) -> bytes:
    """Recompute one stored event's hash from its fields and the previous hash."""
    return chain_hash(
        previous,
        canonical_event(
            stream_id=event.stream_id,
            version=event.version,
            event_id=event.event_id,
            event_type=event.type,
            schema_version=event.schema_version,
            data_json=canonical_json(event.data),
            metadata_json=canonical_json(event.metadata_json_value),
            occurred_at=event.occurred_at,
        ),
    )


def verify_chain(events: Iterable[RecordedEvent]) -> bytes:
    """Check one stream's events, as stored (not upcast), in version order.

    Returns:
        The hash of the last event (the chain head), GENESIS_HASH for none.

    Raises:
        IntegrityError: a version is missing or repeated, or a hash does not
            match its event: names the stream and the first bad position.
    """
    previous = GENESIS_HASH
    expected_version = 1
    for event in events:
        if event.version != expected_version:
            raise errors.IntegrityError(
                stream_id=event.stream_id,
                position=event.position,
                reason=f"version {event.version} where {expected_version} was expected",
            )
        previous = event_hash(previous, event)
        if previous != event.hash:
            raise errors.IntegrityError(
                stream_id=event.stream_id,
                position=event.position,
                reason=f"the hash of version {event.version} does not match its content",
            )
        expected_version += 1
    return previous

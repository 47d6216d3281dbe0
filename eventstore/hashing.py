"""Canonical JSON and the per-stream hash chain (ARCHITECTURE §6), pure code.

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
import re
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import orjson

from eventstore import errors
from eventstore.jsonvalues import JSONValue, parse_json
from eventstore.times import utc_text

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID


GENESIS_HASH: Final = bytes(32)
# ECMAScript prints numbers of this magnitude and above with an exponent.
DOUBLE_DIGITS_LIMIT: Final = 10**21
MAX_DEPTH: Final = 64

_quote: Final = json.encoder.encode_basestring  # the C implementation when available


def canonical_json(value: object, *, what: str | None = None) -> str:
    """Encode a JSON value in the canonical form.

    Every append encodes its data, so an object or array takes orjson's
    sorted encoding when that is provably the canonical text (it reads
    back equal to `value`, and `_orjson_is_canonical` holds), and the exact
    encoder (`exact_canonical_json`) otherwise, which also names what is
    wrong with a value it refuses.

    Args:
        value: dicts with str keys, lists or tuples, str, int, finite float,
            bool or None, nested at most 64 deep.
        what: the argument's name, for the error's message.

    Returns:
        The canonical text.

    Raises:
        ValidationError: the value is not JSON (a set, a datetime, a NaN, a
            non-str key, a NUL character or a lone surrogate in a string,
            an integer of more digits than Python prints).
    """
    return canonical_json_read(value, what=what)[0]


def canonical_json_read(
    value: object, *, what: str | None = None
) -> tuple[str, JSONValue | None]:
    """`canonical_json`, and what a reader parses back from it, when known for free.

    That is when orjson wrote the text: it read it back to compare with
    `value`, and a text with no exponent and no integer beyond 64 bits
    (which `_orjson_is_canonical` and orjson's writer refuse) reads the
    same by orjson as by `parse_json`. Otherwise the value is None.

    Raises:
        ValidationError: as `canonical_json`.
    """
    fast = _orjson_read(value)
    if fast is not None and _orjson_is_canonical(fast[0]):
        return fast[0].decode(), fast[1]
    return exact_canonical_json(value, what=what), None


def check_json(value: object, *, what: str | None = None) -> None:
    """Refuse what `canonical_json` refuses, without needing its text.

    Raises:
        ValidationError: as `canonical_json`.
    """
    fast = _orjson_read(value)
    if fast is not None and _within_limits(fast[0]):
        return  # JSON the store can hold, however its numbers are spelled
    exact_canonical_json(value, what=what)


# Types orjson would encode by their own rules (subclasses of str, int,
# dict and list, dates and times, dataclasses) are refused, to the exact
# encoder. orjson also writes UUIDs, enums and NaN (as null): the
# round trip in `_orjson_read` sends those there.
_ORJSON_OPTIONS: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _orjson_read(value: object) -> tuple[bytes, JSONValue] | None:
    """The sorted encoding of a dict or list by orjson and its reading, if that equals it.

    Equal means of the same JSON value: orjson wrote what the exact encoder
    reads (an enum whose value equals it is written as that value, as the
    exact encoder writes its content). Integers beyond 64 bits, lone
    surrogates and non-str keys orjson refuses itself. Anything but a dict
    or a list is None: the exact encoder is quick on a scalar.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return None
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    read: JSONValue = orjson.loads(text)
    return (text, read) if read == value else None


def exact_canonical_json(value: object, *, what: str | None = None) -> str:
    """`canonical_json` by the pure-Python encoder: the reference form.

    Raises:
        ValidationError: as `canonical_json`, naming the path of the bad value.
    """
    parts: list[str] = []
    try:
        _encode(value, parts, 0)
    except _NotJSON as exc:
        where = f"${''.join(reversed(exc.path))}: {exc.reason}"
        raise errors.ValidationError(
            where if what is None else f"invalid {what}: {where}"
        ) from None
    return "".join(parts)


class _NotJSON(Exception):
    """Raised deep in the encoder; each level adds its key to the path on the way out."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


def _encode(value: object, out: list[str], depth: int) -> None:
    # The hot path of every append: exact type checks first (bool is an int
    # subclass), the C string encoder, and the path of a bad value built
    # only when one is found.
    kind = type(value)
    if kind is str:
        out.append(_encode_str(value))  # type: ignore[arg-type]
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(_encode_int(value))  # type: ignore[arg-type]
    elif kind is float:
        out.append(_encode_float(value))  # type: ignore[arg-type]
    elif kind is dict:
        _encode_object(value, out, depth)  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        _encode_array(value, out, depth)  # type: ignore[arg-type]
    # Subclasses (str and int enums among them) by their content, as the
    # standard library's json writes them, whatever their __str__ says.
    elif isinstance(value, str):
        out.append(_encode_str(str.__str__(value)))
    elif isinstance(value, int):
        out.append(_encode_int(int.__int__(value)))
    elif isinstance(value, float):
        out.append(_encode_float(float.__float__(value)))
    elif isinstance(value, dict):
        _encode_object(value, out, depth)
    elif isinstance(value, list | tuple):
        _encode_array(value, out, depth)
    else:
        raise _NotJSON(f"{type(value).__name__} is not a JSON value")


def _encode_object(value: dict[object, object], out: list[str], depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise _NotJSON(f"nested deeper than {MAX_DEPTH}")
    keys: list[str] = []
    for key in value:
        if type(key) is not str:
            raise _NotJSON(f"key {key!r} is not a string")
        keys.append(key)
    # Code point order equals UTF-16 order unless a key leaves the BMP.
    if all(key.isascii() for key in keys):
        keys.sort()
    else:
        keys.sort(key=_utf16_key)
    out.append("{")
    first = True
    for key in keys:
        if not first:
            out.append(",")
        first = False
        out.append(_encode_str(key))
        out.append(":")
        try:
            _encode(value[key], out, depth + 1)
        except _NotJSON as exc:
            exc.path.append(f".{key}")
            raise
    out.append("}")


def _encode_array(
    value: list[object] | tuple[object, ...], out: list[str], depth: int
) -> None:
    if depth >= MAX_DEPTH:
        raise _NotJSON(f"nested deeper than {MAX_DEPTH}")
    out.append("[")
    for index, item in enumerate(value):
        if index:
            out.append(",")
        try:
            _encode(item, out, depth + 1)
        except _NotJSON as exc:
            exc.path.append(f"[{index}]")
            raise
    out.append("]")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode_str(text: str) -> str:
    if "\x00" in text:
        # PostgreSQL jsonb cannot store U+0000; refuse it on both backends alike.
        raise _NotJSON("strings may not contain NUL (U+0000)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotJSON("string has a lone surrogate") from None
    # The stdlib's C encoder escapes exactly what RFC 8785 does: quote,
    # backslash, \b \f \n \r \t, other controls as lowercase \u00xx.
    return _quote(text)


def _encode_int(number: int) -> str:
    if -DOUBLE_DIGITS_LIMIT < number < DOUBLE_DIGITS_LIMIT:
        return str(number)  # what ECMAScript prints for these values too
    try:
        nearest = float(number)
    except OverflowError:
        return _digits(number)
    if Decimal(repr(nearest)) == number:
        return _encode_float(nearest)
    return _digits(number)


def _digits(number: int) -> str:
    try:
        return str(number)
    except ValueError:  # beyond sys.get_int_max_str_digits(): nobody could read it back
        raise _NotJSON(
            f"an integer of {number.bit_length()} bits has more digits than "
            f"JSON readers accept ({sys.get_int_max_str_digits()})"
        ) from None


def _encode_float(number: float) -> str:
    """ECMAScript Number::toString, as RFC 8785 §3.2.2.3 requires."""
    if not math.isfinite(number):
        raise _NotJSON(f"{number} is not a finite number")
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


def canonical_text(stored: str) -> str:
    """The canonical form of stored JSON text: ``canonical_json(parse_json(stored))``.

    Raises:
        ValidationError: the stored value is not JSON text the store could write.
    """
    return canonical_bytes(stored).decode()


def canonical_bytes(stored: str) -> bytes:
    """`canonical_text` in UTF-8, as the chain hashes it.

    `verify` runs this on every stored event, so it takes orjson's sorted
    encoding when that is provably the same text, and the exact encoder
    otherwise. orjson parses to plain dicts, lists, strs, ints, floats,
    bools and None, and escapes strings as the stdlib does; it differs only
    where `_orjson_is_canonical` looks.

    Raises:
        ValidationError: the stored value is not JSON text the store could write.
    """
    if type(stored) is not str:  # orjson would read bytes too (a BLOB on SQLite)
        raise errors.ValidationError(
            f"stored JSON is {type(stored).__name__}, not text"
        )
    try:
        fast = orjson.dumps(orjson.loads(stored), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        fast = b""  # the exact path names what is wrong
    if fast and _orjson_is_canonical(fast):
        return fast
    try:
        value = parse_json(stored)
    except ValueError as exc:  # not JSON, or a number beyond reading
        raise errors.ValidationError(f"not JSON: {exc}") from None
    return exact_canonical_json(value).encode()  # lone surrogates were refused


# A number whose text orjson and ECMAScript may write differently. Both
# print the shortest digits that round-trip, and agree on the form for a
# plain decimal whose fraction does not end in 0 (orjson writes 100.0 for
# 100, and exponents from 1e16 on, and for what it makes of an integer
# beyond 64 bits). ECMAScript writes plain decimals from 1e-6 to 1e21 only;
# orjson uses exponents well inside that range, but the last two cases
# hold it to that. Matches inside strings too, which only costs the fast path.
# The digits are taken possessively and looked back on, so the search
# gives up at the first character of anything that is not a number.
_NOT_ECMASCRIPT_NUMBER: Final = re.compile(
    rb"[:\[,]-?[0-9]++(?:"
    rb"[eE]"  # an exponent
    rb"|\.(?:"
    rb"(?<=[:\[,\-]0\.)000000"  # below 1e-6
    rb"|(?<=[0-9]{22}\.)"  # from 1e21 on
    rb"|[0-9]*+(?:[eE]|(?<=0))"  # an exponent, or a fraction ending in 0
    rb"))"
)
# The lead byte of a UTF-8 character beyond the BMP: keys holding one may
# sort differently by UTF-8 (orjson) and by UTF-16 code units (RFC 8785).
_BEYOND_BMP: Final = re.compile(rb"[\xf0-\xf4]")
# For counting how deep brackets nest: strings, then the brackets left.
_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS: Final = re.compile(rb"[\[\]{}]")


def _orjson_is_canonical(text: bytes) -> bool:
    """Whether orjson's sorted encoding is provably the canonical text."""
    return (
        _within_limits(text)
        and (text.isascii() or _BEYOND_BMP.search(text) is None)
        and _NOT_ECMASCRIPT_NUMBER.search(text) is None
    )


def _within_limits(text: bytes) -> bool:
    """Whether orjson's encoding of an object or array holds what the store keeps."""
    return (
        text[:1] in {b"{", b"["}  # a number alone is not worth the care
        and b"\\u0000" not in text  # NUL is refused, not encoded
        # Nesting deeper than MAX_DEPTH is refused.
        and (
            text.count(b"{") + text.count(b"[") <= MAX_DEPTH
            or _nesting(text) <= MAX_DEPTH
        )
    )


def _nesting(text: bytes) -> int:
    """How deep the arrays and objects of compact JSON `text` nest."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", text)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def format_occurred_at(moment: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds, a trailing Z."""
    return utc_text(moment) + "Z"


def canonical_event(
    *,
    stream_id: UUID,
    version: int,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    data_json: str,
    metadata_json: str,
    occurred_at: datetime | str,
) -> str:
    """The canonical JSON of one event, from already canonical data and metadata.

    The keys are written in their sorted order by hand, so the (possibly
    large) data is not encoded twice. ``event_type`` is a plain identifier
    (checked by the envelope), so it needs no escaping. ``occurred_at`` may
    be given as its canonical text already (`format_occurred_at`).
    """
    if not isinstance(occurred_at, str):
        occurred_at = format_occurred_at(occurred_at)
    return (
        f'{{"data":{data_json},"event_id":"{event_id}","metadata":{metadata_json},'
        f'"occurred_at":"{occurred_at}",'
        f'"schema_version":{schema_version},"stream_id":"{stream_id}",'
        f'"type":"{event_type}","version":{version}}}'
    )


def canonical_event_bytes(
    *,
    stream_id: UUID | str,
    version: int,
    event_id: UUID | str,
    event_type: str,
    schema_version: int,
    data_json: bytes,
    metadata_json: bytes,
    occurred_at: str,
) -> bytes:
    """`canonical_event` in UTF-8, from canonical data and metadata in UTF-8.

    For `verify`, which gets both as bytes (`canonical_bytes`): the data,
    the largest part, is copied once instead of decoded and encoded again.
    """
    return (
        b'{"data":'
        + data_json
        + f',"event_id":"{event_id}","metadata":'.encode()
        + metadata_json
        + (
            f',"occurred_at":"{occurred_at}","schema_version":{schema_version},'
            f'"stream_id":"{stream_id}","type":"{event_type}","version":{version}}}'
        ).encode()
    )


def chain_hash(previous: bytes, canonical: str) -> bytes:
    """``sha256(previous || utf8(canonical))``: the hash of the next event."""
    return hashlib.sha256(previous + canonical.encode("utf-8")).digest()

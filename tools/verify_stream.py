#!/usr/bin/env python3
"""Verify the hash chains of exported event streams, with the standard library only.

Usage: python3 tools/verify_stream.py FILE      (FILE: JSON lines, plain or gzipped)

FILE holds one stored event per line, as `eventstore audit ID --export FILE`
and the archives write them (docs/HASHING.md): one stream, or many streams
interleaved in log order. For every stream this recomputes
``hash_n = sha256(hash_{n-1} || utf8(canonical(event_n)))`` from a genesis of
32 zero bytes, checks that versions run 1, 2, 3 ... and that each line's
``hash`` is the recomputed one, then prints
``stream ID: N events, head HASH`` per stream and ``OK`` (exit 0), or
``stream ID: broken at position P (version V): reason`` for the first bad
event of each broken stream (exit 1). Unreadable input exits 2.

This file deliberately does not import the `eventstore` package: an auditor
can read it in a few minutes, check it against docs/HASHING.md, and run it
anywhere Python 3.11+ runs, with no trust in the code that wrote the hashes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import sys
import uuid
import zlib
from datetime import UTC, datetime
from decimal import Decimal

GENESIS = bytes(32)
EXPORTED_FIELDS = (
    "stream_id",
    "version",
    "position",
    "event_id",
    "type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "hash",
)

# --- canonical JSON: RFC 8785 (JCS), widened for integers beyond the doubles ---

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_MUST_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def canonical(value: object) -> str:
    """The canonical JSON text of a parsed JSON value."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return canonical_int(value)
    if isinstance(value, float):
        return canonical_float(value)
    if isinstance(value, str):
        return canonical_str(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        # Keys sort by their UTF-16 code units (not by code points).
        keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        items = (canonical_str(key) + ":" + canonical(value[key]) for key in keys)
        return "{" + ",".join(items) + "}"
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def canonical_str(text: str) -> str:
    r"""Escape quote, backslash and controls: \b \f \n \r \t, the others as \u00xx."""
    if "\x00" in text:
        raise ValueError("strings may not contain NUL (U+0000)")
    text.encode("utf-8")  # a lone surrogate raises: it has no UTF-8 form

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return _ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return '"' + _MUST_ESCAPE.sub(escape, text) + '"'


def canonical_int(number: int) -> str:
    """Exact decimal, except an integer that is a double's shortest form (10**21)."""
    if abs(number) < 10**21:
        return str(number)
    try:
        nearest = float(number)
    except OverflowError:
        return str(number)
    if Decimal(repr(nearest)) == number:
        return canonical_float(nearest)
    return str(number)


def canonical_float(number: float) -> str:
    """ECMAScript Number::toString: the shortest round-trip digits, placed by magnitude."""
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{number} is not a finite number")
    if number == 0:
        return "0"
    # repr gives the shortest digits that round-trip; normalize drops trailing zeros.
    _, digit_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)  # the value is 0.DIGITS * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if number < 0 else "") + text


def parse_number(text: str) -> int | float:
    """Numbers by value, as PostgreSQL jsonb keeps them: an integral 1e+30 is an int."""
    if "e" in text.lower() and (value := Decimal(text)) == value.to_integral_value():
        return int(value)
    return float(text)


def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """Refuse `{"a":1,"a":2}`: two readers of such a line could disagree."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a JSON object repeats a key")
    return value


def refuse_constant(name: str) -> object:
    """NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


# --- the chain ---


def canonical_event(line: dict[str, object]) -> str:
    """The canonical JSON of the hashed fields of one exported event."""
    occurred_at = datetime.fromisoformat(str(line["occurred_at"]))
    if occurred_at.utcoffset() is None:
        raise ValueError("occurred_at has no UTC offset")
    return canonical(
        {
            "data": line["data"],
            "event_id": str(uuid.UUID(str(line["event_id"]))),
            "metadata": line["metadata"],
            "occurred_at": occurred_at.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "schema_version": line["schema_version"],
            "stream_id": str(uuid.UUID(str(line["stream_id"]))),
            "type": line["type"],
            "version": line["version"],
        }
    )


class Stream:
    """Where one stream's chain has got to."""

    def __init__(self) -> None:
        self.head = GENESIS
        self.events = 0
        self.broken: str | None = None  # the first problem, once found

    def add(self, line: dict[str, object]) -> None:
        """Check the next event of the stream; remember the first break."""
        if self.broken is not None:
            return
        version, expected = line["version"], self.events + 1
        where = f"broken at position {line['position']} (version {version})"
        if type(version) is not int or version != expected:
            self.broken = f"{where}: version {version} where {expected} was expected"
            return
        try:
            text = canonical_event(line)
        except (ValueError, TypeError) as exc:
            self.broken = f"{where}: {exc}"
            return
        head = hashlib.sha256(self.head + text.encode("utf-8")).digest()
        if head.hex() != str(line["hash"]).lower():
            self.broken = f"{where}: the hash does not match the event's content"
            return
        self.head = head
        self.events = expected


def read_lines(path: str) -> list[dict[str, object]]:
    """The exported events of FILE (gzip recognised by its magic bytes)."""
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    events = []
    # Split on "\n" only: strings may hold U+2028 or U+0085, which splitlines() breaks at.
    for number, text in enumerate(raw.decode("utf-8").split("\n"), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(
                text,
                parse_float=parse_number,
                parse_constant=refuse_constant,
                object_pairs_hook=no_duplicate_keys,
            )
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON: {exc}") from None
        if not isinstance(line, dict):
            raise ValueError(f"line {number}: not a JSON object")
        missing = [name for name in EXPORTED_FIELDS if name not in line]
        if missing:
            raise ValueError(f"line {number}: not an exported event (no {missing[0]})")
        events.append(line)
    return events


def main(argv: list[str]) -> int:
    """Verify FILE; return the exit code."""
    if len(argv) != 1:
        sys.stderr.write("usage: verify_stream.py FILE\n")
        return 2
    try:
        lines = read_lines(argv[0])
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # bad gzip, bad UTF-8
        sys.stderr.write(f"error: cannot read {argv[0]}: {exc}\n")
        return 2
    if not lines:
        sys.stderr.write(f"error: {argv[0]} holds no events\n")
        return 2
    streams: dict[str, Stream] = {}  # in order of first appearance
    for line in lines:
        streams.setdefault(str(line["stream_id"]).lower(), Stream()).add(line)
    for stream_id, stream in streams.items():
        if stream.broken is not None:
            sys.stdout.write(f"stream {stream_id}: {stream.broken}\n")
        else:
            head = stream.head.hex()
            sys.stdout.write(
                f"stream {stream_id}: {stream.events} events, head {head}\n"
            )
    if any(stream.broken is not None for stream in streams.values()):
        return 1
    sys.stdout.write("OK\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

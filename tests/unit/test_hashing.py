"""Canonical JSON (RFC 8785 with exact big integers) and the chain, without a database."""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from eventstore import ValidationError
from eventstore.hashing import (
    GENESIS_HASH,
    canonical_event,
    canonical_json,
    chain_hash,
    format_occurred_at,
)
from eventstore.jsonvalues import parse_json


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # RFC 8785 appendix B / ECMAScript Number::toString
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (333333333.3333333, "333333333.3333333"),
        # integers: exact below 1e21, and beyond when not a double's shortest form
        (2**53 + 1, "9007199254740993"),
        (10**21, "1e+21"),
        (10**21 + 1, "1000000000000000000001"),
        (-(10**30), "-1e+30"),
        (10**400, "1" + "0" * 400),
    ],
)
def test_numbers(value: float, text: str) -> None:
    assert canonical_json(value) == text


def test_keys_sort_by_utf16_code_units_and_strings_escape_minimally() -> None:
    # U+1F600 is a surrogate pair (D83D ...) and sorts before U+FF61 in UTF-16.
    value = {"\uff61": 1, "\U0001f600": 2, "b": 3, "a": 4, "é": 5, "A": 6}
    assert (
        canonical_json(value) == '{"A":6,"a":4,"b":3,"é":5,"\U0001f600":2,"\uff61":1}'
    )
    assert canonical_json('"\\\b\f\n\r\t\x01\x1f\x7f€\u2028') == (
        '"\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\x7f€\u2028"'
    )
    assert canonical_json([None, True, False, [], {}]) == "[null,true,false,[],{}]"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ({1: "x"}, "not a string"),
        ({"a": {1, 2}}, r"\$\.a: set"),
        (b"bytes", "bytes"),
        ("nul\x00", "NUL"),
        ("\ud800", "surrogate"),
        (datetime.now(UTC), "datetime"),
    ],
)
def test_non_json_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        canonical_json(value)


def test_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(70):
        deep = [deep]
    with pytest.raises(ValidationError, match="deeper"):
        canonical_json(deep)


def test_the_canonical_form_survives_a_decimal_round_trip() -> None:
    """What jsonb does: parse numbers by value, print them without exponents."""
    rng = random.Random(3)
    for _ in range(2000):
        number = rng.choice(
            [
                rng.uniform(-1e6, 1e6),
                rng.random() * 10 ** rng.randint(-330, 308),
                float(rng.randint(-(2**70), 2**70)),
                rng.randint(-(10**40), 10**40),
            ]
        )
        text = canonical_json({"n": number})
        from decimal import Decimal

        printed = format(Decimal(json.loads(text, parse_float=str)["n"]), "f")
        assert canonical_json({"n": parse_json(printed)}) == text
        assert canonical_json(parse_json(text)) == text


def test_parse_json_reads_integral_exponents_as_integers() -> None:
    assert parse_json('{"a":1e+30,"b":1.5e-7,"c":2.5,"d":7}') == {
        "a": 10**30,
        "b": 1.5e-7,
        "c": 2.5,
        "d": 7,
    }
    assert math.isclose(parse_json("1.5e+300"), 1.5e300)  # type: ignore[arg-type]


def test_the_canonical_event_and_the_chain() -> None:
    stream, event_id = uuid.uuid4(), uuid.uuid4()
    occurred = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=timezone(timedelta(hours=-3)))
    assert format_occurred_at(occurred) == "2026-03-04T08:06:07.000089Z"
    text = canonical_event(
        stream_id=stream,
        version=3,
        event_id=event_id,
        event_type="ExecutionStarted",
        schema_version=1,
        data_json=canonical_json({"worker_id": "w"}),
        metadata_json=canonical_json({}),
        occurred_at=occurred,
    )
    assert json.loads(text) == {
        "data": {"worker_id": "w"},
        "event_id": str(event_id),
        "metadata": {},
        "occurred_at": "2026-03-04T08:06:07.000089Z",
        "schema_version": 1,
        "stream_id": str(stream),
        "type": "ExecutionStarted",
        "version": 3,
    }
    assert canonical_json(json.loads(text)) == text  # it is its own canonical form
    assert (
        chain_hash(GENESIS_HASH, text)
        == hashlib.sha256(bytes(32) + text.encode()).digest()
    )


def test_parse_json_accepts_surrounding_whitespace_and_refuses_trailing_text() -> None:
    assert parse_json(' {"a": [1, 2.5]}\n') == {"a": [1, 2.5]}
    assert parse_json('{"a":1}') == {"a": 1}
    for bad in ['{"a":1} x', '{"a":1}{}', "", '{"a":']:
        with pytest.raises(json.JSONDecodeError):
            parse_json(bad)

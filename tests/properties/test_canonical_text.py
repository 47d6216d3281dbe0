"""`hashing.canonical_text` (orjson where provably the same) equals the exact encoder.

`verify` recomputes every event's hash from its stored JSON text through
`canonical_text`; a single differing byte would report an intact event as
altered, or pass an altered one. So for every text, generated JSON values
spelled the ways the backends and other writers spell them, and plain
garbage, the fast path must give the exact encoder's text, or the same
error.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ValidationError, hashing, jsonvalues

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

# Characters where encoders disagree: NUL, lone surrogates, the last BMP
# character against one beyond it (their UTF-8 and UTF-16 orders differ),
# JavaScript's line separators, DEL, what JSON must escape.
AWKWARD_CHARACTERS: Final = [
    "\x00", "\ud800", "\udfff", "\uffff", "\U0001f600", "\ue000",
    "\u2028", "\u2029", "\x7f", "\x1f", '"', "\\", "/", "é", "\t",
]  # fmt: skip
# Integers at the edges of 64 bits, of doubles, and of ECMAScript's notation.
EDGE_INTEGERS: Final = [
    2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
    10**21 - 1, 10**21, 10**21 + 1, 10**30, -(10**21), 2**100,
]  # fmt: skip

characters = st.characters() | st.sampled_from(AWKWARD_CHARACTERS)
strings = st.text(characters, max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(EDGE_INTEGERS)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=24,
)


def _spellings(value: object) -> list[str]:
    """How stored JSON of `value` may read: ours, jsonb's, other writers'."""
    spelled = [
        json.dumps(value),  # ASCII with escapes, lone surrogates included
        json.dumps(value, separators=(", ", ": ")),  # PostgreSQL jsonb's layout
        json.dumps(value, indent=1, sort_keys=True),
    ]
    with contextlib.suppress(ValidationError):  # not a value the store writes
        spelled.append(hashing.canonical_json(value))
    return spelled


def _exact(text: str) -> str:
    return hashing.exact_canonical_json(jsonvalues.parse_json(text))


def assert_same(text: str) -> None:
    """The same text from both, or both refuse it (canonical_text as a ValidationError)."""
    try:
        expected = _exact(text)
    except (ValidationError, ValueError):  # parse_json's JSONDecodeError too
        with pytest.raises(ValidationError):
            hashing.canonical_text(text)
        return
    assert hashing.canonical_text(text) == expected, text


@given(json_values)
def test_generated_values_in_every_spelling(value: object) -> None:
    for text in _spellings(value):
        assert_same(text)


@given(st.dictionaries(strings, json_values, min_size=1, max_size=6))
def test_generated_objects_like_event_data(value: dict[str, object]) -> None:
    for text in _spellings(value):
        assert_same(text)


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8))
def test_generated_floats(numbers: list[float]) -> None:
    for text in _spellings({"metrics": numbers}):
        assert_same(text)


@given(st.text(st.sampled_from('{}[]:,"\\0123456789.eE-+ tfnrulasu\x00'), max_size=40))
def test_texts_that_are_mostly_not_json(text: str) -> None:
    assert_same(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',  # a duplicate key: the last wins in both
        '{"\\uffff": 1, "\\ud83d\\ude00": 2}',  # UTF-16 order puts the emoji first
        '{"x": "\\u0000"}',  # NUL: refused
        '{"x": "\\ud800"}',  # a lone surrogate: refused
        '{"x": 1e400}',  # not a finite number
        '{"x": NaN}',
        '{"x": -0}',
        '{"x": -0.0}',
        '{"x": 18446744073709551616}',  # 2**64: orjson reads a double
        '{"x": 1E2}',
        '{"x": 100.0}',  # orjson writes 100.0, ECMAScript 100
        '{"x": 0.000001}',  # ECMAScript's smallest plain decimal
        '{"x": 0.0000001}',  # 1e-7
        '{"x": 1.5e300, "y": 0.1, "z": -2.5}',
        '{"x": 123456789012345678901.5}',
        '{"x": 1e20}',
        '{"x": "a\\u2028b\\u007f\\/"}',
        "[" * 64 + "]" * 64,  # as deep as allowed
        "[" + ",".join(["{}"] * 70) + "]",  # many brackets, shallow
        '["[[[[", ' + "[" * 63 + "]" * 63 + "]",  # brackets in a string do not nest
        "[1e999999999]",  # refused before building a billion digits
        "[" * 65 + "]" * 65,  # one deeper: refused
        '{"x": 1} trailing',
        " {} ",
        "1.0",  # a number alone
        "[1.0]",
    ],
)
def test_edges(text: str) -> None:
    assert_same(text)


def _refuse(*args: object, **kwargs: object) -> str:
    raise AssertionError("the exact encoder ran")


def test_typical_event_data_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Otherwise every test above would pass through the exact path alone.
    stored = (
        '{"step": "call_llm", "metrics": {"prompt_tokens": 812, "cost_usd": 0.0123},'
        ' "output": {"summary": "Refunds: \\"annual\\" plans, café ☕"}}'
    )
    expected = _exact(stored)

    monkeypatch.setattr(hashing, "exact_canonical_json", _refuse)
    assert hashing.canonical_text(stored) == expected


def test_many_small_objects_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = json.dumps({"steps": [{"n": n, "ok": True} for n in range(100)]})
    expected = _exact(stored)
    monkeypatch.setattr(hashing, "exact_canonical_json", _refuse)
    assert hashing.canonical_text(stored) == expected


def test_only_text_is_stored_json() -> None:
    # orjson reads bytes too: a BLOB in SQLite's column is refused like any non-JSON.
    with pytest.raises(ValidationError, match="stored JSON is bytes, not text"):
        hashing.canonical_text(b'{"a":1}')  # type: ignore[arg-type]


@given(
    stream_id=st.uuids(),
    version=st.integers(1, 2**31 - 1),
    event_id=st.uuids(),
    event_type=st.from_regex(r"[A-Z][A-Za-z0-9]{0,40}", fullmatch=True),
    schema_version=st.integers(1, 1000),
    data=st.dictionaries(strings, json_values, max_size=4),
    metadata=st.dictionaries(strings, strings, max_size=3),
    occurred_at=st.datetimes(timezones=st.just(UTC)),
)
def test_verifys_event_bytes_are_the_canonical_event_in_utf8(
    stream_id: UUID,
    version: int,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    data: dict[str, object],
    metadata: dict[str, str],
    occurred_at: datetime,
) -> None:
    """`verify` hashes bytes built by `canonical_event_bytes`; appends, the text."""
    try:
        data_text = hashing.canonical_json(data)
        metadata_text = hashing.canonical_json(metadata)
    except ValidationError:
        return  # a NUL or a lone surrogate: refused before any hash
    fields: dict[str, Any] = {
        "stream_id": stream_id,
        "version": version,
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": hashing.format_occurred_at(occurred_at),
    }
    text = hashing.canonical_event(
        **fields, data_json=data_text, metadata_json=metadata_text
    )
    built = hashing.canonical_event_bytes(
        **fields,
        data_json=hashing.canonical_bytes(json.dumps(data)),
        metadata_json=hashing.canonical_bytes(json.dumps(metadata)),
    )
    assert built == text.encode()

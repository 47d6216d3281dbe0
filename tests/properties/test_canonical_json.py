"""`hashing.canonical_json` (orjson where provably the same) equals the exact encoder.

Every append encodes its data and metadata through `canonical_json`, and
the hash chain covers that text: a byte that differed from the exact
encoder's would break `verify` on the event. So for generated values, those
of JSON and what callers pass instead (tuples, enums, UUIDs, dates, NaN,
subclasses, sets, bytes, huge integers), the fast path must give the exact
encoder's text or refuse it alike; and `check_json` must refuse exactly
what the exact encoder refuses.
"""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import ValidationError, hashing, jsonvalues
from tests.helpers import typed_json
from tests.properties.test_canonical_text import EDGE_INTEGERS, json_values, strings


class Colour(enum.Enum):
    RED = "red"


class Word(str, enum.Enum):  # noqa: UP042 - its str() is "Word.YES": under test
    YES = "yes"
    # A member whose value is not its content: orjson writes the value.
    ODD = 1


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float, enum.Enum):
    HALF = 0.5
    WHOLE = 1.0


class Shout(str):
    def __str__(self) -> str:
        return self.upper()


class Count(int):
    def __int__(self) -> int:
        return 0


class Plain(dict[str, object]):
    pass


class Shadowed(dict[str, object]):
    """Reads differently from what it stores (orjson reads the storage)."""

    def __getitem__(self, key: str) -> object:
        return "shadow"


@dataclass
class Point:
    x: int


# What callers pass that is not a plain JSON value, or is one only in part.
NOT_PLAIN: Final = [
    (1, 2), (), float("nan"), float("inf"), -0.0, 1.0, 1e-7, 1e21, 1e16,
    uuid.UUID(int=7), datetime(2026, 1, 1, tzinfo=UTC), date(2026, 1, 1),
    Colour.RED, Word.YES, Word.ODD, Level.HIGH, Ratio.HALF, Ratio.WHOLE,
    Shout("quiet"), Count(5), Plain(a=1), Shadowed(a=1), OrderedDict(b=2), Point(1),
    {1, 2}, b"bytes", Decimal("1.5"), 2**64, -(2**63) - 1, 10**30,
    {"\x00": 1}, "a\x00b", "\ud800", "\U0001f600", {"\U0001f600": 1, "\uffff": 2},
]  # fmt: skip

awkward = st.recursive(
    json_values | st.sampled_from(NOT_PLAIN) | st.sampled_from(EDGE_INTEGERS),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=16,
)


def _outcome(encode: object, value: object) -> str | type[ValidationError]:
    try:
        return encode(value)  # type: ignore[operator, no-any-return]
    except ValidationError:
        return ValidationError


def assert_same(value: object) -> None:
    """The same text from both encoders, or both refuse; `check_json` agrees;
    what `canonical_json_read` says a reader gets is what `parse_json` gives."""
    expected = _outcome(hashing.exact_canonical_json, value)
    assert _outcome(hashing.canonical_json, value) == expected, value
    refused = _outcome(hashing.check_json, value) is ValidationError
    assert refused == (expected is ValidationError), value
    if expected is not ValidationError:
        text, read = hashing.canonical_json_read(value)
        assert text == expected
        if read is not None:
            assert typed_json(read) == typed_json(jsonvalues.parse_json(text)), value


@given(awkward)
def test_generated_values(value: object) -> None:
    assert_same(value)


@given(st.dictionaries(strings, awkward, min_size=1, max_size=6))
def test_generated_objects_like_event_data(value: dict[str, object]) -> None:
    assert_same(value)


@given(st.lists(st.floats(), max_size=8))
def test_generated_floats(numbers: list[float]) -> None:
    assert_same({"metrics": numbers})


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_each_awkward_value_in_an_object_and_a_list(value: object) -> None:
    assert_same({"x": value})
    assert_same([value, {"y": [value]}])


@pytest.mark.parametrize("depth", [63, 64, 65])
def test_nesting_at_the_limit(depth: int) -> None:
    value: object = 1
    for _ in range(depth):
        value = [value]
    assert_same(value)
    assert_same({"x": value})


def test_subclasses_are_written_by_their_content() -> None:
    # As the standard library's json writes them, whatever __str__ says.
    assert hashing.canonical_json([Shout("quiet"), Count(5), Word.YES]) == (
        '["quiet",5,"yes"]'
    )


def test_a_refusal_names_where_the_bad_value_is() -> None:
    with pytest.raises(ValidationError, match=r"invalid detail: \$\.a\[1\]: nan"):
        hashing.canonical_json({"a": [1, float("nan")]}, what="detail")
    with pytest.raises(ValidationError, match=r"invalid detail: \$\.a: UUID"):
        hashing.check_json({"a": uuid.UUID(int=1)}, what="detail")


def _refuse(*args: object, **kwargs: object) -> str:
    raise AssertionError("the exact encoder ran")


def test_typical_event_data_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Otherwise every test above could pass through the exact path alone.
    data = {
        "step": "call_llm",
        "metrics": {"prompt_tokens": 812, "cost_usd": 0.0123},
        "output": {"summary": 'Refunds: "annual" plans, café ☕', "ok": True},
        "items": [1, -2, None, 2**63 - 1],
    }
    expected = hashing.exact_canonical_json(data)
    monkeypatch.setattr(hashing, "exact_canonical_json", _refuse)
    assert hashing.canonical_json(data) == expected
    hashing.check_json(data)
    assert hashing.canonical_json_read(data)[1] == data

"""JSON values as the store's types say them, and how stored JSON text is read and written.

Both backends read stored JSON by value, the way PostgreSQL `jsonb` does,
so that they hand back equal values for equal rows.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Final, cast

from typing_extensions import TypeAliasType

from eventstore import errors

JSONValue = TypeAliasType(
    "JSONValue",
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None",
)
JSONObject = dict[str, JSONValue]


def _number(text: str) -> int | float:
    if "e" in text or "E" in text:
        value = Decimal(text)
        if value == value.to_integral_value():
            if value.adjusted() >= sys.get_int_max_str_digits():
                # 1e999999999 would build a billion-digit integer first.
                raise ValueError(
                    f"the number {text[:40]} has more digits than JSON readers accept"
                )
            return int(value)
    return float(text)


_DECODER: Final = json.JSONDecoder(parse_float=_number)
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def parse_json(text: str) -> JSONValue:
    """Parse stored JSON the way PostgreSQL jsonb reads numbers: by value.

    An integral number written with an exponent (``1e+30``) becomes an int,
    as jsonb makes it, so both backends hand back the same values.
    """
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        end = -1
    if end != len(text):  # surrounding whitespace, or an error: decode says which
        return cast("JSONValue", _DECODER.decode(text))
    return cast("JSONValue", value)


def dump_json(value: object) -> str:
    """Plain, fast JSON for read-model columns (their values come from the fold)."""
    return _ENCODER.encode(value)


def parse_json_object(text: str) -> JSONObject:
    """Parse a stored JSON object (data, metadata) by value.

    Raises:
        RecordAltered: the stored text is not a JSON object.
    """
    value = parse_json(text)
    if not isinstance(value, dict):
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"stored JSON is not an object: {text[:40]}",
        )
    return value

"""JSON values as the store's types say them: what payloads, metadata and results hold."""

from __future__ import annotations

from typing_extensions import TypeAliasType

JSONValue = TypeAliasType(
    "JSONValue",
    "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None",
)
JSONObject = dict[str, JSONValue]

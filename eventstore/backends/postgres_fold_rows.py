"""`executions` rows from the rows of the fold's SQL (`postgres_fold_sql`).

What the SQL cannot decide alone is decided here by the reference's own
code: ExecutionCreated's data by `created_fields`, the metrics by
`add_metrics`, summed in version order. Where the reference would refuse
a stream, so does this (None): the reference then folds it and says why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from eventstore.backends.postgres_fold_sql import EPOCH, STATUS_BY_CODE
from eventstore.fold import UNREADABLE, add_metrics, created_fields, elapsed_ms
from eventstore.jsonvalues import dump_json, parse_json
from eventstore.schema import executions

if TYPE_CHECKING:
    from collections.abc import Iterable

    import asyncpg

ROW_COLUMNS: Final = tuple(column.name for column in executions.columns)
"""The columns of `folded_row`'s tuples, in their order: the table's own."""

_HUGE: Final = 2.0**63


def folded_row(record: asyncpg.Record) -> tuple[Any, ...] | None:
    """The `executions` row of a plain stream (JSON columns as text).

    None if the reference must fold the stream after all.
    """
    stream_id = record["stream_id"]
    try:
        fields = created_fields(
            stream_id,
            _stored(record["created"]),
            record["created_at"],
            1,
            record["created_position"],
        )
        metrics: dict[str, Any] = {}
        for delta in _stored_list(record["metrics"]):
            add_metrics(metrics, delta, stream_id, 0)
    except UNREADABLE:  # what the reference refuses
        return None
    version, position = record["head"]
    created_at, started_at = fields["created_at"], record["started_at"]
    finished_at = record["finished_at"]
    first_step, cancel = record["first_step"], record["cancel_requested"]
    return (
        stream_id,
        fields["message_id"],
        fields["graph_id"],
        fields["thread_id"],
        STATUS_BY_CODE[record["status"][1]],
        record["inputs"],
        record["result"],
        record["error"],
        created_at,
        started_at,
        finished_at,
        None if cancel is None else _moment(cancel[1]),
        record["worker_id"],
        fields["attempt"],
        fields["retry_of"],
        elapsed_ms(created_at, started_at),
        elapsed_ms(started_at, finished_at),
        elapsed_ms(created_at, finished_at),
        record["steps"],
        dump_json(metrics),
        version,
        position,
        dump_json(fields["labels"]),
        None if first_step is None else _moment(first_step[1]),
    )


def _stored(text: str) -> dict[str, Any]:
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise TypeError("ExecutionCreated data is not a JSON object")
    if _any_huge(value.values()):
        return cast("dict[str, Any]", parse_json(text))  # same shape, exact numbers
    return value


def _stored_list(text: str | None) -> list[Any]:
    if text is None:
        return []
    value = orjson.loads(text)
    if not isinstance(value, list):
        raise TypeError("the metrics are not gathered in a JSON array")
    for item in value:
        if type(item) is dict and _any_huge(item.values()):
            return cast("list[Any]", parse_json(text))  # same shape, exact numbers
    return value


def _any_huge(values: Iterable[object]) -> bool:
    """Whether orjson may have read an integer as a float.

    jsonb writes numbers as plain decimals, which orjson reads to the same
    values as `parse_json` does, but for integers beyond 64 bits: it makes
    them floats. Those are the values the fold reads (Created's fields, the
    metrics' totals); deeper ones it only copies, or refuses whatever
    their type.
    """
    for value in values:  # noqa: SIM110 - a loop costs half of any() over a generator
        if type(value) is float and not -_HUGE < value < _HUGE:
            return True
    return False


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)

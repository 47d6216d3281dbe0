"""`executions` rows from the rows of the fold's SQL (`postgres_fold_sql`).

What the SQL cannot decide alone is decided here by the reference's own
code: ExecutionCreated's data by `written_created` (or `created_fields`),
the metrics by `summed_metrics`, in version order. Where the reference
would refuse a stream, so does this (None): the reference then folds it
and says why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from eventstore.backends.postgres_fold_sql import EPOCH, STATUS_BY_CODE
from eventstore.fold import (
    UNREADABLE,
    created_fields,
    elapsed_ms,
    summed_metrics,
    written_created,
)
from eventstore.jsonvalues import dump_json, parse_json
from eventstore.schema import executions

if TYPE_CHECKING:
    import asyncpg

ROW_COLUMNS: Final = tuple(column.name for column in executions.columns)
"""The columns of `folded_row`'s tuples, in their order: the table's own."""

_HUGE: Final = 2.0**63


def folded_row(record: asyncpg.Record) -> tuple[Any, ...] | None:
    """The `executions` row of a plain stream (JSON columns as text, ids as UUIDs or their text).

    None if the reference must fold the stream after all.
    """
    stream_id = record["stream_id"]
    created_at = record["created_at"]
    try:
        data = _stored_object(record["created"])
        written = written_created(data)
        if written is None:  # the model validates it, as the reference does
            fields = created_fields(
                stream_id, data, created_at, 1, record["created_position"]
            )
            references: tuple[Any, ...] = (
                fields["message_id"],
                fields["graph_id"],
                fields["thread_id"],
                fields["attempt"],
                fields["retry_of"],
            )
            labels = _json_text(fields["labels"])
        else:
            references, labels = written, "{}"
        metrics = _json_text(summed_metrics(_stored_list(record["metrics"]), stream_id))
    except UNREADABLE:  # what the reference refuses
        return None
    message_id, graph_id, thread_id, attempt, retry_of = references
    version, position = record["head"]
    started_at, finished_at = record["started_at"], record["finished_at"]
    first_step, cancel = record["first_step"], record["cancel_requested"]
    return (
        stream_id,
        message_id,
        graph_id,
        thread_id,
        STATUS_BY_CODE[record["status"][1]],
        record["inputs"],
        record["result"],
        record["error"],
        created_at,
        started_at,
        finished_at,
        None if cancel is None else _moment(cancel[1]),
        record["worker_id"],
        attempt,
        retry_of,
        elapsed_ms(created_at, started_at),
        elapsed_ms(started_at, finished_at),
        elapsed_ms(created_at, finished_at),
        record["steps"],
        metrics,
        version,
        position,
        labels,
        None if first_step is None else _moment(first_step[1]),
    )


def _stored_object(text: str) -> dict[str, Any]:
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise TypeError("ExecutionCreated data is not a JSON object")
    for item in value.values():
        if type(item) is float and not -_HUGE < item < _HUGE:
            return cast("dict[str, Any]", parse_json(text))  # _stored_list says why
    return value


def _stored_list(text: str | None) -> list[Any]:
    """The metrics of a stream's events, in version order, by value.

    jsonb writes numbers as plain decimals, which orjson reads to the same
    values as `parse_json` does, but for integers beyond 64 bits: it makes
    them floats. Those are the values the fold reads (Created's fields, the
    metrics' totals); deeper ones it only copies, or refuses whatever
    their type. (A regular expression over the text costs more than these
    loops.)
    """
    if text is None:
        return []
    value = orjson.loads(text)
    if not isinstance(value, list):
        raise TypeError("the metrics are not gathered in a JSON array")
    for delta in value:
        if type(delta) is dict:
            for item in delta.values():
                if type(item) is float and not -_HUGE < item < _HUGE:
                    return cast("list[Any]", parse_json(text))
    return value


def _json_text(value: dict[str, Any]) -> str:
    """A JSON column's text: orjson's, but for integers beyond 64 bits.

    jsonb keeps the value, not the spelling, so any valid text of it will do.
    """
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return dump_json(value)


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)

"""The baseline: the executions projection as a plain asyncpg fold, none of the store's code.

The log is read in position order, `batch_size` events at a time, the next
batch fetched on a second connection while the last is folded and written.
The fold keeps one row per stream in memory (the rules of eventstore/fold.py)
and writes each batch's changed rows with one ``INSERT ... SELECT FROM
unnest(...)``, its checkpoint in the same transaction. `baseline_executions`
has the columns, indexes and foreign keys of `executions`, so the two
tables can be compared row for row.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import orjson

from projections.executions import COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterable

    import asyncpg

TABLE: Final = "baseline_executions"
SETUP_SQL: Final = (
    f"CREATE TABLE {TABLE} (LIKE executions INCLUDING ALL)",
    f"ALTER TABLE {TABLE} ADD FOREIGN KEY (message_id) REFERENCES messages (id), "
    "ADD FOREIGN KEY (graph_id) REFERENCES graphs (id), "
    "ADD FOREIGN KEY (thread_id) REFERENCES threads (id)",
    "CREATE TABLE baseline_checkpoint (position bigint NOT NULL)",
    "INSERT INTO baseline_checkpoint VALUES (0)",
)
RESET_SQL: Final = (f"TRUNCATE {TABLE}", "UPDATE baseline_checkpoint SET position = 0")
READ_SQL: Final = """
SELECT position, stream_id, version, stream_type, type, data::text, occurred_at
FROM execution_events WHERE position > $1 ORDER BY position LIMIT $2
"""
CHECKPOINT_SQL: Final = "UPDATE baseline_checkpoint SET position = $1"
TYPES_SQL: Final = """
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'executions'::regclass AND attnum > 0 AND NOT attisdropped
"""
_SELECTED: Final = ", ".join(COLUMNS)
DIFFERENCES_SQL: Final = f"""
SELECT id FROM ((SELECT {_SELECTED} FROM executions EXCEPT ALL SELECT {_SELECTED} FROM {TABLE})
    UNION ALL (SELECT {_SELECTED} FROM {TABLE} EXCEPT ALL SELECT {_SELECTED} FROM executions)
) AS differing
"""
JSON_COLUMNS: Final = ("inputs", "result", "error", "metrics", "labels")
STATUS: Final = {
    "ExecutionStarted": "running",
    "ExecutionCompleted": "completed",
    "ExecutionFailed": "failed",
    "ExecutionCancelled": "cancelled",
}
KEPT_STATUS: Final = ("ExecutionProgressed", "ExecutionCancellationRequested")
ONE_MS: Final = timedelta(milliseconds=1)

Row = dict[str, Any]


class FoldError(Exception):
    """An event the fold cannot apply (the store's projector would stop too)."""


async def upsert_sql(connection: asyncpg.Connection) -> str:
    """The batch's upsert: one array parameter per column, typed as `executions` is."""
    types: dict[str, str] = {
        r["attname"]: r[1] for r in await connection.fetch(TYPES_SQL)
    }
    arrays = ", ".join(f"${i}::{types[c]}[]" for i, c in enumerate(COLUMNS, 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
    return (
        f"INSERT INTO {TABLE} ({_SELECTED}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def _ms(start: datetime | None, end: datetime) -> int | None:
    return None if start is None else (end - start) // ONE_MS


def _created(stream_id: Any, data: dict[str, Any], at: datetime) -> Row:
    return dict.fromkeys(COLUMNS) | {
        "id": stream_id,
        "message_id": data["message_id"],
        "graph_id": data["graph_id"],
        "thread_id": data["thread_id"],
        "status": "pending",
        "inputs": data.get("inputs"),
        "created_at": at,
        "attempt": data.get("attempt", 1),
        "retry_of": data.get("retry_of"),
        "labels": data.get("labels") or {},
        "steps_completed": 0,
        "metrics": {},
    }


def _advance(row: Row, kind: str, data: dict[str, Any], at: datetime) -> None:
    if kind not in STATUS and kind not in KEPT_STATUS and kind != "ExecutionLabelled":
        raise FoldError(f"stream {row['id']}: cannot apply {kind}")
    row["status"] = STATUS.get(kind, row["status"])
    if kind == "ExecutionStarted":
        row["started_at"], row["worker_id"] = at, data["worker_id"]
        row["queue_ms"] = _ms(row["created_at"], at)
    elif kind == "ExecutionProgressed":
        row["steps_completed"] += 1
        row["first_step_at"] = row["first_step_at"] or at
    elif kind == "ExecutionLabelled":
        removed = set(data.get("remove", []))
        kept = {k: v for k, v in row["labels"].items() if k not in removed}
        row["labels"] = kept | data.get("set", {})
    elif kind == "ExecutionCancellationRequested":
        row["cancel_requested_at"] = row["cancel_requested_at"] or at
    else:  # a terminal event
        row["finished_at"] = at
        row["run_ms"] = _ms(row["started_at"], at)
        row["total_ms"] = _ms(row["created_at"], at)
        if kind == "ExecutionCompleted":
            row["result"] = data.get("result")
        elif kind == "ExecutionFailed":
            row["error"] = data["error"]
    metrics = row["metrics"]
    for name, value in (data.get("metrics") or {}).items():
        metrics[name] = metrics.get(name, 0) + value


def fold_batch(events: list[asyncpg.Record], rows: dict[Any, Row]) -> list[Row]:
    """Fold a batch into `rows` (stream id -> row); the rows it changed."""
    changed: dict[Any, Row] = {}
    for position, stream_id, version, stream_type, kind, text, at in events:
        if stream_type != "execution":
            continue
        data, row = orjson.loads(text), rows.get(stream_id)
        if row is None:
            if kind != "ExecutionCreated":
                raise FoldError(f"stream {stream_id} starts with {kind}")
            row = rows[stream_id] = _created(stream_id, data, at)
        elif version != row["version"] + 1:
            raise FoldError(
                f"stream {stream_id}: version {version} after {row['version']}"
            )
        else:
            _advance(row, kind, data, at)
        row["version"], row["last_position"] = version, position
        changed[stream_id] = row
    return list(changed.values())


def columns(rows: Iterable[Row]) -> list[list[Any]]:
    """The upsert's arguments: one list per column, JSON columns as JSON text."""
    found = list(rows)
    return [
        [orjson.dumps(r[c]).decode() if r[c] is not None else None for r in found]
        if c in JSON_COLUMNS
        else [r[c] for r in found]
        for c in COLUMNS
    ]


async def fold(
    reader: asyncpg.Connection, writer: asyncpg.Connection, upsert: str, batch_size: int
) -> int:
    """Fold the whole log into an empty `baseline_executions`; the events read."""
    rows: dict[Any, Row] = {}
    folded = 0
    fetching = asyncio.ensure_future(reader.fetch(READ_SQL, 0, batch_size))
    while events := await fetching:
        last = events[-1]["position"]
        fetching = asyncio.ensure_future(reader.fetch(READ_SQL, last, batch_size))
        changed = fold_batch(events, rows)
        async with writer.transaction():
            if changed:
                await writer.execute(upsert, *columns(changed))
            await writer.execute(CHECKPOINT_SQL, last)
        folded += len(events)
    return folded

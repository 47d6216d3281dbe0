"""The baseline: the executions projection folded by hand with asyncpg, nothing else.

One connection; per batch one transaction that reads the next events after the
checkpoint with the store's gap-safe predicate, loads the batch's existing rows
in one SELECT, folds in plain dicts (the fields `eventstore/fold.py` derives),
writes every changed row with one ``INSERT ... SELECT FROM unnest(...) ON
CONFLICT DO UPDATE`` guarded by the row's version, and moves the checkpoint by
compare-and-set. `raw_executions` is `executions` copied ``LIKE ... INCLUDING
ALL`` plus its three foreign keys: the same indexes and reference checks.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bench.harness import execute

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg

CHECKPOINT_NAME: Final = "raw_executions"
SETUP_SQL: Final = (
    "CREATE TABLE raw_executions (LIKE executions INCLUDING ALL)",
    "ALTER TABLE raw_executions "
    "ADD FOREIGN KEY (message_id) REFERENCES messages (id), "
    "ADD FOREIGN KEY (graph_id) REFERENCES graphs (id), "
    "ADD FOREIGN KEY (thread_id) REFERENCES threads (id)",
    "CREATE TABLE raw_checkpoints (name text PRIMARY KEY, "
    "transaction_id xid8 NOT NULL, position bigint NOT NULL)",
    f"INSERT INTO raw_checkpoints VALUES ('{CHECKPOINT_NAME}', '0', 0)",
)
RESET_SQL: Final = (
    "TRUNCATE raw_executions",
    f"UPDATE raw_checkpoints SET transaction_id = '0', position = 0 "
    f"WHERE name = '{CHECKPOINT_NAME}'",
)
CHECKPOINT_SQL: Final = (
    "SELECT transaction_id, position FROM raw_checkpoints WHERE name = $1"
)
# The WHERE and ORDER BY of the store's READ_ALL_SQL; only the columns the
# fold needs.
READ_SQL: Final = """
SELECT position, transaction_id, stream_id, version, stream_type, type, data, occurred_at
FROM execution_events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (transaction_id, position) > ($1::xid8, $2)
ORDER BY transaction_id, position
LIMIT $3
"""
# The columns of `executions` and their types (the arrays of the upsert).
_TYPES: Final = dict(
    re.findall(
        r"(\w+):(\w+)",
        """
        id:uuid message_id:uuid graph_id:uuid thread_id:uuid status:text inputs:text
        result:text error:text created_at:timestamptz started_at:timestamptz
        finished_at:timestamptz cancel_requested_at:timestamptz worker_id:text
        attempt:int retry_of:uuid queue_ms:bigint run_ms:bigint total_ms:bigint
        steps_completed:int metrics:text version:int last_position:bigint
        """,
    )
)
COLUMNS: Final = tuple(_TYPES)
LOAD_SQL: Final = (
    f"SELECT {', '.join(COLUMNS)} FROM raw_executions WHERE id = ANY($1::uuid[])"
)
_JSON_COLUMNS: Final = frozenset({"inputs", "result", "error", "metrics"})
UPSERT_SQL: Final = (
    f"INSERT INTO raw_executions ({', '.join(COLUMNS)}) "
    "SELECT "
    + ", ".join(f"{name}::jsonb" if name in _JSON_COLUMNS else name for name in COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${i}::{_TYPES[name]}[]" for i, name in enumerate(COLUMNS, 1))
    + f") AS e({', '.join(COLUMNS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS if name != "id")
    + " WHERE raw_executions.version < excluded.version"
)
ADVANCE_SQL: Final = (
    "UPDATE raw_checkpoints SET transaction_id = $2::xid8, position = $3 "
    "WHERE name = $1 AND transaction_id = $4::xid8 AND position = $5"
)
TERMINAL: Final = {
    "ExecutionCompleted": "completed",
    "ExecutionFailed": "failed",
    "ExecutionCancelled": "cancelled",
}
_ONE_MS: Final = timedelta(milliseconds=1)

Row = dict[str, Any]


class FoldError(Exception):
    """An event the fold cannot apply (the baseline stops, as the projector does)."""


async def setup(dsn: str) -> None:
    """Create raw_executions and raw_checkpoints (after the store's migration)."""
    await execute(dsn, *SETUP_SQL)


async def reset(dsn: str) -> None:
    """Empty raw_executions and put the checkpoint back at the start."""
    await execute(dsn, *RESET_SQL)


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return (end - start) // _ONE_MS


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _apply(row: Row | None, event: asyncpg.Record, data: dict[str, Any]) -> Row:
    """Fold one event into a row, in place (None before ExecutionCreated)."""
    kind, at = event["type"], event["occurred_at"]
    if row is None:
        if kind != "ExecutionCreated":
            raise FoldError(f"stream {event['stream_id']} starts with {kind}")
        return dict.fromkeys(COLUMNS) | {
            "id": event["stream_id"],
            "message_id": data["message_id"],
            "graph_id": data["graph_id"],
            "thread_id": data["thread_id"],
            "status": "pending",
            "inputs": _json(data.get("inputs")),
            "created_at": at,
            "attempt": data.get("attempt", 1),
            "retry_of": data.get("retry_of"),
            "steps_completed": 0,
            "metrics": {},
            "version": event["version"],
            "last_position": event["position"],
        }
    if event["version"] != row["version"] + 1:
        raise FoldError(
            f"stream {event['stream_id']}: version {event['version']} "
            f"does not follow {row['version']}"
        )
    row["version"] = event["version"]
    row["last_position"] = event["position"]
    if kind == "ExecutionStarted":
        row["status"] = "running"
        row["started_at"] = at
        row["worker_id"] = data["worker_id"]
        row["queue_ms"] = _ms(row["created_at"], at)
    elif kind == "ExecutionProgressed":
        row["steps_completed"] += 1
    elif kind == "ExecutionCancellationRequested":
        if row["cancel_requested_at"] is None:
            row["cancel_requested_at"] = at
    elif kind in TERMINAL:
        row["status"] = TERMINAL[kind]
        row["finished_at"] = at
        row["run_ms"] = _ms(row["started_at"], at)
        row["total_ms"] = _ms(row["created_at"], at)
        if kind == "ExecutionCompleted":
            row["result"] = _json(data.get("result"))
        elif kind == "ExecutionFailed":
            row["error"] = _json(data["error"])
    else:
        raise FoldError(f"stream {event['stream_id']}: cannot apply {kind}")
    delta = data.get("metrics")
    if isinstance(delta, dict) and delta:
        metrics = row["metrics"]
        for name, value in delta.items():
            metrics[name] = metrics.get(name, 0) + value
    return row


async def _load(connection: asyncpg.Connection, ids: list[UUID]) -> dict[UUID, Row]:
    rows: dict[UUID, Row] = {}
    for record in await connection.fetch(LOAD_SQL, ids):
        row = dict(record)
        row["metrics"] = json.loads(row["metrics"])
        rows[row["id"]] = row
    return rows


async def _apply_batch(
    connection: asyncpg.Connection, after: tuple[int, int], batch_size: int
) -> tuple[int, tuple[int, int]]:
    """One batch in one transaction; returns the events read and the new checkpoint."""
    async with connection.transaction():
        events = await connection.fetch(READ_SQL, after[0], after[1], batch_size)
        if not events:
            return 0, after
        streams = list(
            dict.fromkeys(
                e["stream_id"] for e in events if e["stream_type"] == "execution"
            )
        )
        rows = await _load(connection, streams)
        changed: dict[UUID, Row] = {}
        for event in events:
            if event["stream_type"] != "execution":
                continue
            stream_id = event["stream_id"]
            row = rows.get(stream_id)
            if row is not None and event["version"] <= row["version"]:
                continue
            rows[stream_id] = changed[stream_id] = _apply(
                row, event, json.loads(event["data"])
            )
        if changed:
            values = list(changed.values())
            columns = [
                [_json(row[name]) if name == "metrics" else row[name] for row in values]
                for name in COLUMNS
            ]
            await connection.execute(UPSERT_SQL, *columns)
        last = events[-1]
        new = (int(last["transaction_id"]), int(last["position"]))
        moved = await connection.execute(
            ADVANCE_SQL, CHECKPOINT_NAME, new[0], new[1], after[0], after[1]
        )
        if moved != "UPDATE 1":
            raise FoldError("the checkpoint moved under us")
    return len(events), new


async def fold_on(connection: asyncpg.Connection, *, batch_size: int) -> int:
    """Fold the log into raw_executions until caught up; returns the events read.

    On an open connection, so that a caller can time the fold alone.
    """
    record = await connection.fetchrow(CHECKPOINT_SQL, CHECKPOINT_NAME)
    if record is None:
        raise FoldError("no raw_checkpoints row: run setup() first")
    after = (int(record["transaction_id"]), int(record["position"]))
    total = 0
    while True:
        count, after = await _apply_batch(connection, after, batch_size)
        total += count
        if count < batch_size:
            return total

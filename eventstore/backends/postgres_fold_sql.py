"""The SQL of the executions fold in PostgreSQL (ARCHITECTURE §5): one pass grouped by stream.

Each stream's row comes out with what it takes to build an `executions`
row, and ``plain``: whether the aggregates alone show that the reference
fold (`eventstore.fold`) accepts the stream and what it makes of it.
Plain means:

- every event is an execution's, of a type the fold knows at its current
  schema version (an older one is upcast on read, which only the
  reference does), with a JSON object for data; ExecutionLabelled is left
  to the reference;
- versions run 1..n, and version 1 is the stream's one ExecutionCreated;
- at most one ExecutionStarted (with a string worker id) and one terminal
  event, the start before the end; an ExecutionFailed has an ``error``.

Then the last event of a kind is the only one, and first and last are
min and max over (version, value) arrays, so no aggregate depends on the
order rows reach it but the metrics, which are aggregated in version order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from eventstore.backends.postgres_order import COLUMNS, ORDER, in_partition
from eventstore.events.payloads import PAYLOAD_TYPES
from eventstore.fold import TERMINAL_EVENT_TYPES
from eventstore.status import RESULTING_STATUS, SETS_STATUS

# The types whose status the row takes, each with a code: max over
# (version, code) is the status of the last of them.
_STATUS_CODES: Final = tuple(SETS_STATUS.items())
STATUS_BY_CODE: Final = tuple(status.value for _, status in _STATUS_CODES)
"""The status each code of the ``status`` column stands for."""
# Every type the fold applies but ExecutionLabelled (whose label changes
# are the reference's to check).
_FOLDED_TYPES: Final = tuple(
    name for name in RESULTING_STATUS if name != "ExecutionLabelled"
)


def _quoted(names: tuple[str, ...] | frozenset[str]) -> str:
    return ", ".join(f"'{name}'" for name in sorted(names))


# The current schema version of each type: an older one is upcast on read,
# which only the reference does. Built from code constants, not input.
_CURRENT_VERSION: Final = " ".join(
    f"WHEN '{name}' THEN {PAYLOAD_TYPES[name].schema_version}" for name in _FOLDED_TYPES
)
_STATUS_CODE: Final = " ".join(
    f"WHEN '{name}' THEN {code}" for code, (name, _) in enumerate(_STATUS_CODES)
)
_TERMINAL: Final = _quoted(TERMINAL_EVENT_TYPES)
# Microseconds since the epoch, exact: a time beside a version in one array,
# so that min/max pick the time of the first/last event of a kind.
_MICROS: Final = "(extract(epoch FROM occurred_at) * 1000000)::bigint"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""Where the ``micros`` of `FOLD_SQL` count from."""

# The subquery keeps only what the aggregates read, so the sort by stream
# carries narrow rows (OFFSET 0 keeps the planner from flattening it).
FOLD_SQL: Final = f"""
SELECT stream_id,
  bool_or(stream_type = 'execution') AS execution,
  count(*) AS events,
  bool_and(
    stream_type = 'execution'
    AND type IN ({_quoted(_FOLDED_TYPES)})
    AND schema_version >= CASE type {_CURRENT_VERSION} END
    AND is_object
    AND (type <> 'ExecutionStarted' OR worker_id_is_text)
    AND (type <> 'ExecutionFailed' OR has_error)
  )
  AND count(*) = max(version) AND min(version) = 1
  AND count(*) FILTER (WHERE type = 'ExecutionCreated' AND version = 1) = 1
  AND count(*) FILTER (WHERE type = 'ExecutionCreated') = 1
  AND count(*) FILTER (WHERE type = 'ExecutionStarted') <= 1
  AND count(*) FILTER (WHERE type IN ({_TERMINAL})) <= 1
  AND coalesce(
    max(version) FILTER (WHERE type = 'ExecutionStarted')
      < max(version) FILTER (WHERE type IN ({_TERMINAL})),
    true
  ) AS plain,
  max(ARRAY[version::bigint, position]) AS head,
  max(ARRAY[version, CASE type {_STATUS_CODE} END])
    FILTER (WHERE type IN ({_quoted(tuple(name for name, _ in _STATUS_CODES))}))
    AS status,
  max(occurred_at) FILTER (WHERE version = 1) AS created_at,
  max(position) FILTER (WHERE version = 1) AS created_position,
  max(created) AS created,
  max(inputs) AS inputs,
  max(occurred_at) FILTER (WHERE type = 'ExecutionStarted') AS started_at,
  max(worker_id) AS worker_id,
  max(occurred_at) FILTER (WHERE type IN ({_TERMINAL})) AS finished_at,
  max(result) AS result,
  max(error) AS error,
  count(*) FILTER (WHERE type = 'ExecutionProgressed') AS steps,
  min(ARRAY[version::bigint, micros]) FILTER (WHERE type = 'ExecutionProgressed')
    AS first_step,
  min(ARRAY[version::bigint, micros])
    FILTER (WHERE type = 'ExecutionCancellationRequested') AS cancel_requested,
  jsonb_agg(metrics ORDER BY version) FILTER (WHERE metrics IS NOT NULL) AS metrics
FROM (
  SELECT stream_id, stream_type, version, position, type, schema_version,
    occurred_at,
    jsonb_typeof(data) = 'object' AS is_object,
    CASE WHEN type = 'ExecutionStarted' THEN data->>'worker_id' END AS worker_id,
    coalesce(jsonb_typeof(data->'worker_id') = 'string', false) AS worker_id_is_text,
    coalesce(data ? 'error', false) AS has_error,
    CASE WHEN type = 'ExecutionCompleted' THEN nullif(data->'result', 'null') END
      ::text AS result,
    CASE WHEN type = 'ExecutionFailed' THEN nullif(data->'error', 'null') END
      ::text AS error,
    CASE WHEN version = 1 THEN data - 'inputs' END::text AS created,
    CASE WHEN version = 1 THEN nullif(data->'inputs', 'null') END::text AS inputs,
    CASE WHEN version > 1 THEN data->'metrics' END AS metrics,
    {_MICROS} AS micros
  FROM execution_events
  WHERE (epoch, transaction_id, position) <= ($1, $2::xid8, $3)
    AND {in_partition("$4", "$5")}
  OFFSET 0
) AS event
GROUP BY stream_id
"""  # noqa: S608 - built from code constants only

# The whole log is read: a sequential scan and one sort beat a walk of the
# (stream_id, version) index, whose heap reads are random (1.0 s against
# 3.0 s for 1,000,000 events on the benchmark's machine).
SCAN_WHOLE_LOG_SQL: Final = "SET LOCAL enable_indexscan = off"

# The streams the reference folds, in the log's order as it would meet them.
READ_STREAMS_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    "WHERE stream_id = ANY($1::uuid[]) "
    "AND (epoch, transaction_id, position) <= ($2, $3::xid8, $4) "
    f"{ORDER}"
)

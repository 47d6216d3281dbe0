"""The rebuild's fold in PostgreSQL equals the reference fold, row for row.

On PostgreSQL a rebuild from the start lets the database fold the streams
it can (`eventstore/backends/postgres_fold*.py`) and folds the rest with
the reference (`eventstore.fold`). For generated logs, written behind the
append guards so that they hold what an older release or a careless owner
could have left (unknown types, gaps, old schema versions, two terminal
events, labels, metrics of every JSON type, numbers at the edges of 64
bits and of doubles), the rebuild must leave the very table the reference
alone leaves, every column compared as text, or fail the same way.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from eventstore import EventStore, EventStoreError
from eventstore.schema import executions
from eventstore.status import RESULTING_STATUS
from projections.executions import ExecutionsProjection
from projections.rebuild import run_rebuild
from tests.helpers import make_references, raw_pg
from tests.rebuild_support import ReferenceOnly

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.helpers import References

pytestmark = pytest.mark.postgres

BASE: Final = datetime(2026, 11, 1, tzinfo=UTC)
# The types after ExecutionCreated, in the order of the status table, and
# one no release wrote.
KINDS: Final = (
    *(name for name in RESULTING_STATUS if name != "ExecutionCreated"),
    "ExecutionPaused",
)
EDGE_NUMBERS: Final = [
    0, -0.0, 1, 2**53, 2**53 + 1, 2**63 - 1, 2**64, 10**30, 2**100, 1e16, 100.0,
    0.1, 1e-7, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324,
]  # fmt: skip
TEXT: Final = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=8,
)
JSON_LEAVES: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_NUMBERS),
    TEXT,
)
JSON_VALUES: Final = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)
METRIC_VALUES: Final = st.one_of(
    st.integers(0, 5000),
    st.floats(0, 1, allow_nan=False),
    st.sampled_from(EDGE_NUMBERS),
    st.booleans(),
    st.none(),
    TEXT,
)
METRICS: Final = st.one_of(
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "cost_usd"]),
        METRIC_VALUES,
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "cost_usd"]),
        st.integers(0, 5000) | st.floats(0, 1, allow_nan=False),
        max_size=2,
    ),
    JSON_VALUES,
)
LABEL_SETS: Final = st.dictionaries(st.sampled_from(["team", "tier"]), TEXT, max_size=2)
# What ExecutionCreated may carry as labels: falsy values mean none.
GOOD_LABELS: Final[st.SearchStrategy[Any]] = LABEL_SETS | st.sampled_from(
    [[], "", 0, None]
)
# Metrics the fold sums: numbers (booleans count as 0 and 1), totals in range.
GOOD_METRICS: Final[st.SearchStrategy[Any]] = st.one_of(
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "cost_usd"]),
        st.integers(0, 5000)
        | st.floats(0, 1, allow_nan=False)
        | st.booleans()
        | st.sampled_from([2**64, 10**30, 1e16, 100.0, 1e-7, 5e-324]),
        max_size=3,
    ),
    st.sampled_from([None, [], "text", 3]),  # not an object: no metrics
)
LABELS: Final[st.SearchStrategy[Any]] = st.one_of(
    st.just({}),
    st.dictionaries(st.sampled_from(["team", "tier", "Bad Key"]), TEXT, max_size=2),
    st.sampled_from([[], "", 0, None, {"team": 3}]),
)


def _id_text(draw: st.DrawFn, known: uuid.UUID, poison: bool) -> Any:
    """An id as the lifecycle writes it, mostly; else as others might."""
    if draw(st.integers(0, 9)) <= 6:
        return str(known)
    spellings = [str(known).upper(), known.hex, "{" + str(known) + "}"]
    return draw(
        st.sampled_from(spellings + (["not a uuid", None, 7] if poison else []))
    )


@st.composite
def created_data(
    draw: st.DrawFn, references: References, poison: bool
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": _id_text(draw, references.message.id, poison),
        "graph_id": _id_text(draw, references.graph.id, poison),
        "thread_id": _id_text(draw, references.thread.id, poison),
    }
    if draw(st.booleans()):
        data["inputs"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        attempts = [1, 2, 3, 0, -1, True, 2.0, "2"] + ([None, 2.5] if poison else [])
        data["attempt"] = draw(st.sampled_from(attempts))
    if draw(st.booleans()):
        retry_of = [None, str(references.message.id)] + (["nope"] if poison else [])
        data["retry_of"] = draw(st.sampled_from(retry_of))
    if draw(st.integers(0, 3)) == 0:
        data["labels"] = draw(LABELS if poison else GOOD_LABELS)
    if draw(st.integers(0, 5)) == 0:
        data["metrics"] = draw(METRICS)  # the fold ignores Created's metrics
    return data


@st.composite
def later_data(draw: st.DrawFn, kind: str, poison: bool) -> tuple[int, Any]:
    """(schema version, data) of an event after the first."""
    data: dict[str, Any] = {}
    version = 2 if kind == "ExecutionProgressed" else 1
    if kind == "ExecutionStarted":
        workers = ["worker-1", "w" * 200] + (
            ["w" * 201, 7, None, ...] if poison else []
        )
        worker = draw(st.sampled_from(workers))
        if worker is not ...:
            data["worker_id"] = worker
    elif kind == "ExecutionProgressed":
        data["step"] = draw(st.sampled_from(["plan", 3]))
        if draw(st.integers(0, 5)) == 0:  # a v1 event, flat usage: upcast on read
            version = 1
            tokens = st.integers(0, 100) | (st.just("x") if poison else st.just(0))
            data["prompt_tokens"] = draw(tokens)
    elif kind == "ExecutionCompleted" and draw(st.booleans()):
        data["result"] = draw(JSON_VALUES)
    elif kind == "ExecutionFailed" and (not poison or draw(st.booleans())):
        data["error"] = draw(st.one_of(st.none(), JSON_VALUES))
    elif kind == "ExecutionLabelled":
        data["set"] = draw(LABELS if poison else LABEL_SETS)
    if version == 2 and draw(st.integers(0, 2)) > 0:
        data["metrics"] = draw(METRICS if poison else GOOD_METRICS)
    if poison and draw(st.integers(0, 10)) == 0:
        return version, draw(st.sampled_from([[], "text", 3]))  # not an object
    return version, data


@st.composite
def stream(draw: st.DrawFn, references: References) -> list[dict[str, Any]]:
    """One execution stream's rows, mostly a lifecycle, sometimes poison."""
    stream_id = uuid.uuid4()
    poison = draw(st.integers(0, 12)) == 0
    count = draw(st.integers(1, 7))
    kinds = ["ExecutionCreated"]
    lifecycle = draw(st.booleans())
    for _ in range(count - 1):
        if lifecycle:
            kinds.append(
                draw(st.sampled_from(KINDS[1:2] * 4 + KINDS[4:5]))
                if len(kinds) > 1
                else "ExecutionStarted"
            )
        else:  # any order of the types the fold applies, some twice
            kinds.append(draw(st.sampled_from(KINDS[:-1] if not poison else KINDS)))
    if lifecycle and draw(st.booleans()):
        kinds.append(draw(st.sampled_from(KINDS[2:6])))
    if poison and draw(st.booleans()):
        kinds[0] = draw(st.sampled_from(KINDS))  # no ExecutionCreated first
    if poison and draw(st.booleans()):
        kinds.insert(draw(st.integers(1, len(kinds))), "ExecutionCreated")
    versions = list(range(1, len(kinds) + 1))
    if poison and len(versions) > 1 and draw(st.booleans()):
        del versions[draw(st.integers(0, len(versions) - 1))]  # a gap
        kinds.pop()
    moment = BASE + timedelta(microseconds=draw(st.integers(0, 10**9)))
    rows = []
    for version, kind in zip(versions, kinds, strict=True):
        if kind == "ExecutionCreated":
            schema_version, data = 1, draw(created_data(references, poison))
        else:
            schema_version, data = draw(later_data(kind, poison))
        moment += timedelta(microseconds=draw(st.integers(-(10**6), 10**8)))
        rows.append(
            {
                "stream_id": stream_id,
                "version": version,
                "type": kind,
                "schema_version": schema_version,
                "data": data,
                "occurred_at": moment,
            }
        )
    return rows


@st.composite
def logs(draw: st.DrawFn, references: References) -> list[dict[str, Any]]:
    """Streams interleaved in one log, each in its own version order."""
    streams = draw(st.lists(stream(references), min_size=1, max_size=6))
    order = draw(st.permutations([i for i, s in enumerate(streams) for _ in s]))
    cursors = [iter(s) for s in streams]
    return [next(cursors[i]) for i in order]


async def _write_log(url: str, rows: list[dict[str, Any]]) -> None:
    """The log, replaced, behind the triggers (rows the guards would refuse)."""
    connection = await raw_pg(url)
    try:
        async with connection.transaction():
            await connection.execute(
                "ALTER TABLE execution_events DISABLE TRIGGER USER"
            )
            await connection.execute("DELETE FROM execution_events")
            await connection.executemany(
                "INSERT INTO execution_events (stream_id, version, stream_type, "
                "event_id, type, schema_version, data, metadata, occurred_at, "
                "recorded_at, hash) VALUES ($1, $2, 'execution', $3, $4, $5, "
                "$6::jsonb, '{}', $7, now(), '\\x00')",
                [
                    (
                        row["stream_id"],
                        row["version"],
                        uuid.uuid4(),
                        row["type"],
                        row["schema_version"],
                        json.dumps(row["data"]),
                        row["occurred_at"],
                    )
                    for row in rows
                ],
            )
            await connection.execute("ALTER TABLE execution_events ENABLE TRIGGER USER")
    finally:
        await connection.close()


async def _rebuilt(store: EventStore, projection: ExecutionsProjection) -> object:
    """The rebuilt table, every column as text, or the error's class."""
    try:
        await run_rebuild(store, projection, restart=True)
    except EventStoreError as exc:
        return type(exc).__name__
    columns = ", ".join(f"{column.name}::text" for column in executions.columns)
    async with store.backend.connect_read() as connection:
        rows = await connection.exec_driver_sql(f"SELECT {columns} FROM executions")
        return sorted(tuple(row) for row in rows)


@pytest.fixture
async def fold_store(pg_url: str) -> AsyncIterator[tuple[EventStore, References]]:
    async with EventStore.open(pg_url) as store:
        yield store, await make_references(store)


@given(data=st.data())
async def test_the_database_folds_every_generated_log_as_the_reference_does(
    fold_store: tuple[EventStore, References], pg_url: str, data: st.DataObject
) -> None:
    store, references = fold_store
    rows = data.draw(logs(references))
    await _write_log(pg_url, rows)
    context = store.projection_context
    folded = await _rebuilt(store, ExecutionsProjection(context))
    reference = await _rebuilt(store, ReferenceOnly(context))
    event("refused" if isinstance(reference, str) else "folded")
    assert folded == reference

"""What the rebuild tests check: the table is the fold, the schema has no drift."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore.schema import (
    SHADOW_CHECKPOINT_SUFFIX,
    executions,
    projection_checkpoints,
)
from projections.executions import ExecutionsProjection, row_to_state
from tests.helpers import assert_rows_are_the_fold, event_token_sum
from tests.migrations.test_migrations import drift_of

if TYPE_CHECKING:
    import uuid

    from eventstore import EventStore, ExecutionState


class ReferenceOnly(ExecutionsProjection):
    """The executions projection with the database's own fold turned off.

    A rebuild of it folds every event here, with the reference, a batch
    (and a shadow checkpoint) at a time.
    """

    def database_fold(self) -> None:
        return None


async def table_rows(store: EventStore) -> dict[uuid.UUID, ExecutionState]:
    """Every row of `executions`, by id."""
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(sa.select(executions))
        return {state.id: state for state in map(row_to_state, rows.mappings())}


async def assert_table_is_the_fold(
    store: EventStore,
) -> dict[uuid.UUID, ExecutionState]:
    """One row per execution stream, each equal to `executions.get()` (a fresh fold)."""
    return await assert_rows_are_the_fold(store, await table_rows(store))


async def assert_metrics_summed_once(
    store: EventStore, rows: dict[uuid.UUID, ExecutionState]
) -> None:
    """The rows' token and cost totals equal the sums over the log's events."""
    tokens, cost = await event_token_sum(store)
    assert tokens > 0
    assert (
        sum(
            int(row.metrics.get("prompt_tokens", 0))
            + int(row.metrics.get("completion_tokens", 0))
            for row in rows.values()
        )
        == tokens
    )
    assert math.isclose(
        sum(float(row.metrics.get("cost_usd", 0)) for row in rows.values()), cost
    )


async def assert_clean_schema(store: EventStore) -> None:
    """No drift from the migrations (no shadow or retired table left) and no shadow checkpoint."""
    assert await drift_of(store) == []
    async with store.backend.connect_read() as connection:
        names = set(
            (
                await connection.execute(sa.select(projection_checkpoints.c.name))
            ).scalars()
        )
    assert not any(name.endswith(SHADOW_CHECKPOINT_SUFFIX) for name in names)

"""A service's own foreign key to `executions` (the recipe of docs/MIGRATIONS.md).

The revision is the one the document shows, run by the service's own alembic
tree beside ours: a rebuild keeps the service's rows and its key (moved onto
the swapped-in table on PostgreSQL, checked once at the end on SQLite), the
archive honours the key's ON DELETE rule, and a row that references nothing
makes the rebuild refuse.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from eventstore import DatabaseError, EventStore, ExecutionStatus
from eventstore.schema import executions
from projections.executions import ExecutionsProjection
from projections.rebuild import run_rebuild
from tests.helpers import execution_in, make_references, project_everything
from tests.migrations.test_version_table import run_service, service_history
from tests.rebuild_support import assert_table_is_the_fold
from tests.test_docs_code import code_blocks

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path
    from uuid import UUID

invoices = sa.Table(
    "invoices",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("execution_id", sa.Uuid),
    sa.Column("amount_cents", sa.Integer),
)

# Whether the service's key on invoices is in place and checked.
KEY_SQL = """
SELECT confrelid::regclass::text, convalidated FROM pg_constraint
WHERE conrelid = 'invoices'::regclass AND contype = 'f'
"""


@pytest.fixture
async def store(empty_url: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """A store migrated first, then the service's history with the document's revision."""
    (revision,) = code_blocks("alembic-revision")
    async with EventStore.open(empty_url) as opened:
        await opened.migrate()
        service = service_history(tmp_path, empty_url, revision.code)
        await run_service(command.upgrade, service, "head")
        yield opened


async def _runs_with_invoices(store: EventStore) -> tuple[UUID, UUID]:
    """A finished and a running execution, projected, each with an invoice."""
    refs = await make_references(store)
    finished = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    running = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await project_everything(store)
    async with store.backend.engine.begin() as connection:
        await connection.execute(
            sa.insert(invoices),
            [
                {"id": 1, "execution_id": finished, "amount_cents": 120},
                {"id": 2, "execution_id": running, "amount_cents": 80},
            ],
        )
    return finished, running


async def _invoices(store: EventStore) -> dict[int, UUID]:
    async with store.backend.engine.connect() as connection:
        rows = await connection.execute(
            sa.select(invoices.c.id, invoices.c.execution_id)
        )
        return {row.id: row.execution_id for row in rows}


async def _insert_invoice(store: EventStore, execution_id: UUID) -> None:
    async with store.backend.engine.begin() as connection:
        await connection.execute(
            sa.insert(invoices).values(id=3, execution_id=execution_id, amount_cents=1)
        )


async def test_a_rebuild_keeps_the_service_rows_and_their_key(
    store: EventStore,
) -> None:
    finished, running = await _runs_with_invoices(store)

    await run_rebuild(store, ExecutionsProjection(store.backend))

    assert await _invoices(store) == {1: finished, 2: running}
    await assert_table_is_the_fold(store)
    if store.backend.name == "postgresql":
        async with store.backend.engine.connect() as connection:
            keys = (await connection.execute(sa.text(KEY_SQL))).all()
        assert [tuple(key) for key in keys] == [("executions", True)]
    # The key still refuses a row that references no run.
    with pytest.raises(sa_exc.IntegrityError):
        await _insert_invoice(store, uuid.uuid4())
    await _insert_invoice(store, running)


async def test_the_archive_removes_the_rows_of_archived_runs(
    store: EventStore, tmp_path: Path
) -> None:
    finished, running = await _runs_with_invoices(store)
    await run_rebuild(store, ExecutionsProjection(store.backend))

    result = await store.audit.archive(
        finished_before=datetime.now(UTC) + timedelta(minutes=1), directory=tmp_path
    )

    assert result is not None
    assert {stream.stream_id for stream in result.manifest.streams} == {finished}
    assert await _invoices(store) == {2: running}  # ON DELETE CASCADE


async def _insert_unchecked_invoice(store: EventStore, url: str) -> UUID:
    """An invoice of a run that does not exist, written past the key's check."""
    missing = uuid.uuid4()
    if store.backend.name == "sqlite":
        # sqlite3 leaves foreign keys off unless asked.
        with sqlite3.connect(make_url(url).database or "") as connection:
            connection.execute(
                "INSERT INTO invoices (id, execution_id, amount_cents) VALUES (9, ?, 1)",
                (missing.hex,),
            )
    else:
        async with store.backend.engine.begin() as connection:
            # A superuser's switch that skips the key's triggers.
            await connection.execute(
                sa.text("SET LOCAL session_replication_role = replica")
            )
            await connection.execute(
                sa.insert(invoices).values(id=9, execution_id=missing, amount_cents=1)
            )
    return missing


async def test_a_row_referencing_no_run_stops_the_rebuild(
    store: EventStore, empty_url: str
) -> None:
    await _runs_with_invoices(store)
    async with store.backend.engine.begin() as connection:  # damage the read model
        await connection.execute(sa.update(executions).values(steps_completed=42))
    await _insert_unchecked_invoice(store, empty_url)

    with pytest.raises(DatabaseError, match="invoices"):
        await run_rebuild(store, ExecutionsProjection(store.backend))

    async with store.backend.engine.connect() as connection:
        steps = set(
            (
                await connection.execute(sa.select(executions.c.steps_completed))
            ).scalars()
        )
        keys = (
            (await connection.execute(sa.text(KEY_SQL))).all()
            if store.backend.name == "postgresql"
            else []
        )
    if store.backend.name == "sqlite":
        assert steps == {42}  # replayed in one transaction: nothing was changed
    else:
        # The swap committed; the key is still enforced for new rows, and
        # marked unchecked until the row is fixed.
        await assert_table_is_the_fold(store)
        assert [tuple(key) for key in keys] == [("executions", False)]
        with pytest.raises(sa_exc.IntegrityError):
            await _insert_invoice(store, uuid.uuid4())

"""`project --status` when another role's transaction holds the read horizon.

PostgreSQL shows a role without pg_read_all_stats the transaction id of
every session, but not when another role's transaction started: the age of
the transaction that holds the log back is then unknown, and must be said
to be, not shown as 0.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore
from projections import projection_status
from tests.cli.runner import run_cli
from tests.conftest import ADMIN_URL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.postgres


@pytest.fixture
async def reader_url(pg_url: str) -> AsyncIterator[str]:
    """A login that may read the store, and is neither superuser nor a stats reader."""
    role = f"horizon_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_url).database
    admin = await asyncpg.connect(ADMIN_URL)
    store = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await store.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        yield make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    finally:
        await store.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        await store.close()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE usename = '{role}' AND datname = '{database}'"
        )
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.fixture
async def held_horizon() -> AsyncIterator[None]:
    """A transaction with an id, kept open by the superuser: it holds the horizon."""
    connection = await asyncpg.connect(ADMIN_URL)
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.fetchval("SELECT pg_current_xact_id()")
        yield
    finally:
        await transaction.rollback()
        await connection.close()


async def test_the_age_of_another_roles_transaction_is_unknown(
    pg_url: str, reader_url: str, held_horizon: None
) -> None:
    del held_horizon
    async with EventStore.open(pg_url) as store:
        # The superuser sees when the transaction started.
        seen_by_owner = await projection_status(store)
    assert seen_by_owner.horizon is not None
    assert seen_by_owner.horizon.age_seconds is not None

    async with EventStore.open(reader_url) as store:
        status = await projection_status(store)
    assert status.horizon is not None
    assert status.horizon.age_seconds is None

    text = run_cli("project", "--status", "--url", reader_url)
    assert text.returncode == 0, text.stderr
    assert "age unknown" in text.stdout
    assert " 0.0 s old" not in text.stdout

    machine = run_cli("project", "--status", "--json", "--url", reader_url)
    assert machine.returncode == 0, machine.stderr
    assert json.loads(machine.stdout)["horizon"]["age_seconds"] is None

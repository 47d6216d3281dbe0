"""Databases for the tests: a migrated template per session, a fresh copy per test.

PostgreSQL: the template is migrated once; each test gets `CREATE DATABASE ...
TEMPLATE` and drops it afterwards. SQLite: a migrated template file is copied
per test. No in-memory databases and no rollback isolation: the code under
test opens its own transactions, and that is what the tests must exercise.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore
from tests.helpers import References, make_references

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ADMIN_URL = os.environ.get(
    "EVENTSTORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_url_for(database: str) -> str:
    """The URL of a database on the test server."""
    return (
        make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    )


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def create_pg_database(template: str | None = None) -> str:
    """Create a throwaway database (from a template) and return its name."""
    name = f"es_test_{uuid.uuid4().hex[:16]}"
    suffix = f" TEMPLATE {template}" if template else ""
    await _admin(f"CREATE DATABASE {name}{suffix}")
    return name


async def drop_pg_database(name: str) -> None:
    """Drop a throwaway database, ending any session still on it."""
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
async def pg_template() -> AsyncIterator[str]:
    try:
        await _admin("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it or set "
            "EVENTSTORE_TEST_POSTGRES_URL",
            returncode=3,
        )
    name = await create_pg_database()
    async with EventStore.open(pg_url_for(name)) as store:
        await store.migrate()
    yield name
    await drop_pg_database(name)


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of this test's own."""
    name = await create_pg_database(pg_template)
    yield pg_url_for(name)
    await drop_pg_database(name)


@pytest.fixture
async def empty_pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database with no schema."""
    name = await create_pg_database()
    yield pg_url_for(name)
    await drop_pg_database(name)


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    async with EventStore.open(f"sqlite:///{path}") as store:
        await store.migrate()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """An SQLite file with no schema."""
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs on both backends."""
    name: str = request.param
    return name


@pytest.fixture
def url(backend_name: str, request: pytest.FixtureRequest) -> str:
    """A migrated database of this test's own, on each backend."""
    fixture = "sqlite_url" if backend_name == "sqlite" else "pg_url"
    value: str = request.getfixturevalue(fixture)
    return value


@pytest.fixture
def empty_url(backend_name: str, request: pytest.FixtureRequest) -> str:
    """An unmigrated database on each backend."""
    fixture = "empty_sqlite_url" if backend_name == "sqlite" else "empty_pg_url"
    value: str = request.getfixturevalue(fixture)
    return value


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    """An open store on a migrated database, on each backend."""
    async with EventStore.open(url) as opened:
        yield opened


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[EventStore]:
    """An open store on a migrated PostgreSQL database."""
    async with EventStore.open(pg_url) as opened:
        yield opened


@pytest.fixture
async def refs(store: EventStore) -> References:
    """A thread, a message in it, and a graph."""
    return await make_references(store)


@pytest.fixture
async def pg_refs(pg_store: EventStore) -> References:
    """A thread, a message in it, and a graph, on PostgreSQL."""
    return await make_references(pg_store)

"""Databases for the tests: a migrated template per session, a fresh copy per test.

PostgreSQL: the template is migrated once; each test gets `CREATE DATABASE ...
TEMPLATE` and drops it afterwards. SQLite: a migrated template file is copied
per test. No in-memory databases and no rollback isolation: the code under
test opens its own transactions, and that is what the tests must exercise.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import asyncpg
import pytest

from eventstore import EventStore
from eventstore.testing import PostgresServer
from tests.helpers import References, make_references

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ADMIN_URL = os.environ.get(
    "EVENTSTORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# The plugin's own server helper (eventstore.testing): databases made and dropped.
SERVER = PostgresServer(ADMIN_URL)
TEST_PREFIX = "es_test_"


@pytest.fixture(scope="session")
async def pg_template() -> AsyncIterator[str]:
    try:
        await SERVER.execute("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.exit(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it or set "
            "EVENTSTORE_TEST_POSTGRES_URL",
            returncode=3,
        )
    name = await SERVER.create(TEST_PREFIX)
    async with EventStore.open(SERVER.url_of(name)) as store:
        await store.migrate()
    yield name
    await SERVER.drop(name)


@pytest.fixture
async def pg_url(pg_template: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of this test's own."""
    name = await SERVER.create(TEST_PREFIX, template=pg_template)
    yield SERVER.url_of(name)
    await SERVER.drop(name)


@pytest.fixture
async def empty_pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database with no schema."""
    name = await SERVER.create(TEST_PREFIX)
    yield SERVER.url_of(name)
    await SERVER.drop(name)


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

"""The pytest plugin for services' own tests: a fresh, migrated store per test.

Installed with the package (entry point ``pytest11``), so a project that
depends on `eventstore` has, with no conftest:

- ``eventstore_url``: the URL of a database of this test's own, migrated to
  the head revision. An SQLite file under ``tmp_path``; or, when the
  environment variable ``EVENTSTORE_TEST_POSTGRES_URL`` names a PostgreSQL
  server (the URL of any database there, as a role that may create
  databases), a database made for the test and dropped after it.
- ``event_store``: an open `EventStore` on that database (needs
  pytest-asyncio, as every async test does).
- ``await project(store)``: fold the log into the projections until caught
  up, which a service's projector daemon would do in the background.

Migrating takes seconds, so each session migrates once, into a template, and
each test gets a copy: ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL (a file
copy in the server), a file copy on SQLite. A template is named for its
session and dropped when the session ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventstore import EventStore, errors
from projections import Projector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
    from pathlib import Path

__all__ = ["POSTGRES_URL_VARIABLE", "PostgresServer", "project"]

POSTGRES_URL_VARIABLE: Final = "EVENTSTORE_TEST_POSTGRES_URL"
_T = TypeVar("_T")


async def project(store: EventStore) -> int:
    """Fold every event appended so far into the projections; how many were folded.

    What the projector daemon does in production, done once and awaited, so
    that a test can read `ExecutionsView` right after its commands.
    """
    return await Projector(store).run_until_caught_up()


def _blocking(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to the end from a plain fixture.

    On a thread of its own: the test's event loop may be set (or running)
    on this one, and must be left as it is.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(lambda: asyncio.run(work())).result()


async def _migrate(url: str) -> None:
    async with EventStore.open(url) as store:
        await store.migrate()


class PostgresServer:
    """A PostgreSQL server on which tests make databases and drop them.

    The plugin's fixtures use it, and so can a project's own conftest.
    """

    def __init__(self, url: str) -> None:
        """`url`: any database on the server, as a role that may create databases.

        Raises:
            ConfigurationError: not a postgresql:// URL.
        """
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise errors.ConfigurationError(
                f"{POSTGRES_URL_VARIABLE} is not a database URL"
            ) from exc
        if parsed.get_backend_name() != "postgresql":
            raise errors.ConfigurationError(
                f"{POSTGRES_URL_VARIABLE} must be a postgresql:// URL, "
                f"not {parsed.get_backend_name()}://"
            )
        self._url = parsed.set(drivername="postgresql")

    def url_of(self, database: str) -> str:
        """The URL of one database on this server."""
        return self._url.set(database=database).render_as_string(hide_password=False)

    async def execute(self, sql: str) -> None:
        """Run one statement on the server (outside any transaction)."""
        connection = await asyncpg.connect(
            self._url.render_as_string(hide_password=False)
        )
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def create(self, prefix: str, *, template: str | None = None) -> str:
        """A new database's name (a copy of `template`, if given)."""
        name = f"{prefix}{uuid.uuid4().hex[:16]}"
        copy = f" TEMPLATE {template}" if template else ""
        await self.execute(f"CREATE DATABASE {name}{copy}")
        return name

    async def drop(self, name: str) -> None:
        """Drop a database, ending any session left on it."""
        await self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def _eventstore_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PostgresServer, str] | Path]:
    """The session's migrated template: a PostgreSQL database, or an SQLite file."""
    server_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not server_url:
        path = tmp_path_factory.mktemp("eventstore") / "template.db"
        _blocking(lambda: _migrate(f"sqlite:///{path}"))
        yield path
        return
    server = PostgresServer(server_url)
    name = _blocking(lambda: server.create("eventstore_template_"))
    try:
        _blocking(lambda: _migrate(server.url_of(name)))
        yield server, name
    finally:
        _blocking(lambda: server.drop(name))


@pytest.fixture
def eventstore_url(
    _eventstore_template: tuple[PostgresServer, str] | Path, tmp_path: Path
) -> Iterator[str]:
    """A migrated database of this test's own (see the module's docstring)."""
    if not isinstance(_eventstore_template, tuple):
        path = tmp_path / "eventstore.db"
        shutil.copyfile(_eventstore_template, path)
        yield f"sqlite:///{path}"
        return
    server, template = _eventstore_template
    name = _blocking(lambda: server.create("eventstore_test_", template=template))
    try:
        yield server.url_of(name)
    finally:
        _blocking(lambda: server.drop(name))


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - a project without pytest-asyncio

    @pytest.fixture(name="event_store")
    def _event_store_unavailable() -> Any:
        """Unavailable: an open store needs an event loop from pytest-asyncio."""
        pytest.fail(
            "the event_store fixture needs pytest-asyncio: pip install pytest-asyncio"
        )

else:

    @pytest_asyncio.fixture
    async def event_store(eventstore_url: str) -> AsyncIterator[EventStore]:
        """An open store on this test's own migrated database."""
        async with EventStore.open(eventstore_url) as store:
            yield store

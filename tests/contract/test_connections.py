"""Opening stores: URLs, settings, unreachable databases."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from eventstore import (
    ConfigurationError,
    DatabaseUnavailable,
    EventStore,
    ExecutionStatus,
    StoreSettings,
)
from eventstore.backends import normalize_url
from eventstore.backends.postgres import PostgresBackend
from tests.helpers import execution_in, make_references


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u:p@h:5433/db", "postgresql+asyncpg://u:p@h:5433/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
    ],
)
def test_urls_are_normalized(url: str, normalized: str) -> None:
    assert normalize_url(url) == normalized


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "not a url", "http://example.com", "sqlite://"]
)
async def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        await EventStore.open(url)


@pytest.mark.postgres
async def test_an_unreachable_postgres_is_a_typed_error() -> None:
    settings = StoreSettings(connect_timeout=2)
    with pytest.raises(DatabaseUnavailable) as caught:
        await EventStore.open(
            "postgresql://postgres@127.0.0.1:1/nowhere", settings=settings
        )
    assert "127.0.0.1:1" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        await EventStore.open(
            "postgresql://postgres@127.0.0.1:5432/no_such_database_here"
        )


@pytest.mark.sqlite
async def test_an_unopenable_sqlite_file_is_a_typed_error(tmp_path: object) -> None:
    with pytest.raises(DatabaseUnavailable):
        await EventStore.open("sqlite:////nonexistent-dir/sub/store.db")


@pytest.mark.sqlite
async def test_the_default_is_an_sqlite_file_or_the_environment(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.delenv("EVENTSTORE_URL", raising=False)
    async with EventStore.open() as store:
        assert store.url.endswith("eventstore.db")
        await store.migrate()
    monkeypatch.setenv("EVENTSTORE_URL", "sqlite:///from-env.db")
    async with EventStore.open() as store:
        assert store.url.endswith("from-env.db")
    assert StoreSettings().url == "sqlite:///from-env.db"


@pytest.mark.postgres
async def test_url_options_are_session_settings_of_every_connection(
    pg_url: str,
) -> None:
    """libpq's ?options=-c name=value reached asyncpg.connect as a TypeError."""
    url = (
        make_url(pg_url)
        .update_query_dict(
            {
                "options": r"-c statement_timeout=54321 --lock-timeout=4321 -cwork_mem=5MB"
            }
        )
        .render_as_string(hide_password=False)
    )
    async with EventStore.open(url) as store:
        refs = await make_references(store)  # through SQLAlchemy's pool
        await execution_in(store, refs, ExecutionStatus.COMPLETED)  # the fast path
        async with store.backend.connect_read() as connection:
            shown = (
                await connection.exec_driver_sql(
                    "SELECT current_setting('statement_timeout'), "
                    "current_setting('lock_timeout'), current_setting('work_mem')"
                )
            ).one()
        assert tuple(shown) == ("54321ms", "4321ms", "5MB")
        assert isinstance(store.backend, PostgresBackend)
        async with store.backend.pool.acquire() as raw:
            assert await raw.fetchval("SHOW statement_timeout") == "54321ms"


@pytest.mark.parametrize(
    "options", ["-d 5", "s3cr3tpw", "-c", "-c =1", "--=x", "-c 1abc=2"]
)
async def test_url_options_other_than_settings_are_refused_unquoted(
    options: str,
) -> None:
    url = f"postgresql://u@127.0.0.1:1/x?options={quote(options)}"
    with pytest.raises(ConfigurationError, match="only settings") as caught:
        await EventStore.open(url)
    assert "s3cr3tpw" not in str(caught.value)

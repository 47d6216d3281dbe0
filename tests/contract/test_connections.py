"""Opening stores: URLs, settings, unreachable databases."""

from __future__ import annotations

import pytest

from eventstore import (
    ConfigurationError,
    DatabaseUnavailable,
    EventStore,
    StoreSettings,
)
from eventstore.backends import normalize_url


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

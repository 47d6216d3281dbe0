"""Choose the backend for a database URL: the only place that reads its scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventstore import errors
from eventstore.backends.base import AppendOutcome, Backend

if TYPE_CHECKING:
    from eventstore.settings import StoreSettings

__all__ = ["AppendOutcome", "Backend", "backend_for", "normalize_url"]

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's URL (postgres://, sqlite:///...).

    Raises:
        ConfigurationError: the URL is malformed or names another database.
    """
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise errors.ConfigurationError(f"malformed database URL {url!r}") from exc
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )
    if parsed.drivername in _SQLITE_SCHEMES:
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(
            hide_password=False
        )
    raise errors.ConfigurationError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use postgresql://... or sqlite:///FILE"
    )


def backend_for(url: str, settings: StoreSettings) -> Backend:
    """The backend for a database URL.

    Raises:
        ConfigurationError: the URL is malformed or names another database.
    """
    normalized = normalize_url(url)
    if normalized.startswith("postgresql"):
        from eventstore.backends.postgres import PostgresBackend

        return PostgresBackend(url=normalized, settings=settings)
    from eventstore.backends.sqlite import SqliteBackend

    return SqliteBackend(url=normalized, settings=settings)

"""Choose the backend for a database URL: the only place that reads its scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sqlalchemy.exc import ArgumentError

from eventstore import errors
from eventstore.backends.base import Backend
from eventstore.backends.rows import AppendDecision
from eventstore.redaction import parse_url, redact_url, remember_secrets, scrub

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from eventstore.settings import StoreSettings

__all__ = [
    "AppendDecision",
    "Backend",
    "backend_for",
    "normalize_url",
]

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
MIN_PORT: Final = 1
MAX_PORT: Final = 65535


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's URL (postgres://, sqlite:///...).

    Every error names the URL as `redact_url` shows it: never its password.

    Raises:
        ConfigurationError: the URL is malformed (a port that is not a number
            from 1 to 65535 included) or names another database.
    """
    if not url.strip():
        raise errors.ConfigurationError(
            "the database URL is empty: use postgresql://... or sqlite:///FILE"
        )
    parsed = parse_url(url.replace("postgres://", "postgresql://", 1))
    if parsed is None or (parsed.host is not None and "@" in parsed.host):
        # An @ in the host: an unquoted @ in the password (quote it as %40).
        raise errors.ConfigurationError(
            f"malformed database URL {redact_url(url)}: use "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (quote special "
            "characters as %XX) or sqlite:///FILE"
        )
    remember_secrets(parsed)
    if parsed.drivername in _POSTGRES_SCHEMES:
        async_url = parsed.set(drivername="postgresql+asyncpg")
        _check_postgres_url(async_url, url)
        return async_url.render_as_string(hide_password=False)
    if parsed.drivername in _SQLITE_SCHEMES:
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(
            hide_password=False
        )
    raise errors.ConfigurationError(
        f"unsupported database URL {redact_url(parsed)}: "
        "use postgresql://... or sqlite:///FILE"
    )


def _check_postgres_url(parsed: URL, url: str) -> None:
    """Refuse here what the driver would refuse later with a raw error.

    The dialect reads the host and ports as the driver will (`h:5432`,
    `?host=h1:p1&host=h2:p2`, `?port=`); each port must be 1 to 65535.
    """
    try:
        _, options = parsed.get_dialect()().create_connect_args(parsed)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise errors.ConfigurationError(
            f"invalid database URL {redact_url(url)}: {scrub(str(exc))}"
        ) from None
    # The dialect drops a port of 0 from its options: check the URL's own too.
    ports = options.get("port")
    for port in [parsed.port, *(ports if isinstance(ports, list) else [ports])]:
        if port is not None and not MIN_PORT <= int(port) <= MAX_PORT:
            raise errors.ConfigurationError(
                f"invalid port {port} in the database URL {redact_url(url)}: "
                f"a number from {MIN_PORT} to {MAX_PORT}"
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

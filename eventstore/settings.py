"""Settings read from the environment (EVENTSTORE_*) by pydantic-settings."""

from __future__ import annotations

import re
from typing import Final

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventstore import errors

DEFAULT_SQLITE_FILE: Final = "eventstore.db"
SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class StoreSettings(BaseSettings):
    """How the store connects; every field can be set as EVENTSTORE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="EVENTSTORE_", frozen=True)

    url: str | None = Field(
        default=None,
        description="database URL; unset: an SQLite file in the current directory",
        # It may hold a password: a logged or printed settings object must not.
        repr=False,
    )
    postgres_schema: str | None = Field(
        default=None,
        description="the PostgreSQL schema of every table, function and "
        "trigger of the store, created by `migrate` (a lower-case name); "
        "unset: the URL's search path, usually `public`. SQLite ignores it",
    )
    sqlite_file: str = Field(
        default=DEFAULT_SQLITE_FILE, description="the embedded default's file"
    )
    pool_size: int = Field(
        default=20,
        ge=1,
        description="connections per pool; on PostgreSQL a process opens at most "
        "3 x this + 2 (README, Configuration)",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for a new connection"
    )
    idle_in_transaction_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description="ends our own sessions left idle in a transaction, which "
        "would hold back the read horizon of every reader (ARCHITECTURE §1)",
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30000, ge=0, description="how long an SQLite writer waits for the lock"
    )
    command_retries: int = Field(
        default=5,
        ge=0,
        description="how often a lifecycle command re-decides after losing a race",
    )
    stale_after_seconds: float = Field(
        default=600,
        gt=0,
        description="what `eventstore cleanup` with no option fails: running "
        "executions with no heartbeat (or start) for this long",
    )
    poll_interval: float = Field(
        default=0.05, gt=0, description="seconds between polls of live readers"
    )

    @field_validator("postgres_schema")
    @classmethod
    def _plain_schema_name(cls, name: str | None) -> str | None:
        # Lower case and unquoted, so that the name means the same in SQL,
        # in search_path and on the command line.
        if name is not None and (
            SCHEMA_NAME.fullmatch(name) is None or name.startswith("pg_")
        ):
            raise ValueError(
                "a schema name is 1 to 63 lower-case letters, digits and "
                "underscores, not starting with a digit or pg_"
            )
        return name

    @classmethod
    def from_environment(cls) -> StoreSettings:
        """The settings the environment gives (EVENTSTORE_*).

        Raises:
            ConfigurationError: a variable holds a value its setting
                refuses; the message names the variable (not its value:
                EVENTSTORE_URL may hold a password).
        """
        try:
            return cls()
        except ValidationError as exc:
            problem = exc.errors()[0]
            name = "_".join(str(part) for part in problem["loc"]).upper()
            reason = problem["msg"].removeprefix("Value error, ")
            raise errors.ConfigurationError(
                f"EVENTSTORE_{name} is invalid: {reason}"
            ) from None

    def resolved_url(self) -> str:
        """The URL to use: the configured one, else the embedded SQLite file."""
        return self.url or f"sqlite+aiosqlite:///{self.sqlite_file}"


def settings_table() -> str:
    """The settings as the README's Markdown table (a test keeps the README equal to it)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in StoreSettings.model_fields.items():
        default = "unset" if field.default is None else f"`{field.default}`"
        lines.append(
            f"| `EVENTSTORE_{name.upper()}` | {default} | {field.description} |"
        )
    return "\n".join(lines) + "\n"

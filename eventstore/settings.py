"""Settings read from the environment (EVENTSTORE_*) by pydantic-settings."""

from __future__ import annotations

from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_FILE: Final = "eventstore.db"


class StoreSettings(BaseSettings):
    """How the store connects; every field can be set as EVENTSTORE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="EVENTSTORE_", frozen=True)

    url: str | None = Field(
        default=None,
        description="database URL; unset: an SQLite file in the current directory",
        # It may hold a password: a logged or printed settings object must not.
        repr=False,
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

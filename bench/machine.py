"""The machine a run measured: CPU, memory, versions, load."""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from bench.databases import Server

SETTINGS: Final = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "autovacuum",
    "max_connections",
)
PACKAGES: Final = (
    "asyncpg",
    "aiosqlite",
    "sqlalchemy",
    "pydantic",
    "eventsourcing",
    "psycopg",
)


@dataclass(slots=True)
class Environment:
    """Facts about the run, gathered at its start (load and end time also at its end)."""

    started_at: datetime
    nproc: int
    cpu: str
    memory: str
    python: str
    system: str
    postgres: str
    postgres_settings: dict[str, str]
    sqlite: str
    packages: dict[str, str]
    commit: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    finished_at: datetime | None = field(default=None)

    def finish(self) -> None:
        """Record the end time and the load average after the run."""
        self.finished_at = datetime.now(UTC)
        self.load_after = os.getloadavg()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "eventstore", "migrations"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return (
        f"{head} (eventstore/ or migrations/ modified in the working tree)"
        if dirty
        else head
    )


def _version(package: str) -> str:
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
    if package == "psycopg":
        import psycopg  # only to ask which implementation loaded

        version += f" ({psycopg.pq.__impl__} implementation)"
    return version


def collect(server: Server, *, with_postgres: bool = True) -> Environment:
    """Gather the environment now."""
    return Environment(
        started_at=datetime.now(UTC),
        nproc=os.cpu_count() or 0,
        cpu=_cpu_model(),
        memory=_memory(),
        python=platform.python_version(),
        system=platform.platform(),
        postgres=asyncio.run(server.version()) if with_postgres else "not used",
        postgres_settings=asyncio.run(server.settings(SETTINGS))
        if with_postgres
        else {},
        sqlite=sqlite3.sqlite_version,
        packages={name: _version(name) for name in PACKAGES},
        commit=_commit(),
        load_before=os.getloadavg(),
    )

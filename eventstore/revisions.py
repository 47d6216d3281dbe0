"""Which schema revision a database holds, and which one this code needs.

The store's revisions keep their own version table, so that a service's
own alembic history can live in the same database with `alembic_version`
(docs/MIGRATIONS.md). Databases migrated before that recorded our revision in
`alembic_version`: they are read as they are, and the next migration moves
the record over (`adopt_legacy_version`), running no revision again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_HEAD: Final = "0014"
"""The revision this version of the code needs (a test keeps it equal to alembic's head)."""
VERSION_TABLE: Final = "eventstore_alembic_version"
"""Where our revision tree records its revision."""
LEGACY_VERSION_TABLE: Final = "alembic_version"
"""Where it did before (alembic's default, which services' own histories use)."""
# Our revision ids: "0001" to the head, numbered without gaps.
OUR_REVISIONS: Final = frozenset(f"{n:04d}" for n in range(1, int(SCHEMA_HEAD) + 1))
# A table every revision of ours has: a legacy record is ours only beside it.
_OUR_TABLE: Final = "execution_events"


def _version_in(connection: Connection, table: str) -> list[str]:
    rows = connection.execute(sa.text(f"SELECT version_num FROM {table}"))  # noqa: S608 - a constant
    return [str(row[0]) for row in rows]


def _legacy_revision(connection: Connection) -> str | None:
    """Our revision as recorded in `alembic_version` by earlier versions, if it is there.

    Only when that table holds exactly one row, one of our revision ids, and
    the log's table exists: a service's own history in the same table is
    never taken for ours.
    """
    inspector = sa.inspect(connection)
    if not (
        inspector.has_table(LEGACY_VERSION_TABLE) and inspector.has_table(_OUR_TABLE)
    ):
        return None
    recorded = _version_in(connection, LEGACY_VERSION_TABLE)
    if len(recorded) == 1 and recorded[0] in OUR_REVISIONS:
        return recorded[0]
    return None


def revision_of(connection: Connection) -> str | None:
    """The revision recorded in the database (ours or legacy), or None without a schema."""
    if sa.inspect(connection).has_table(VERSION_TABLE):
        recorded = _version_in(connection, VERSION_TABLE)
        return recorded[0] if recorded else None
    return _legacy_revision(connection)


async def recorded_revision(connection: AsyncConnection) -> str | None:
    """The schema revision recorded in the database, or None without a schema."""
    return await connection.run_sync(revision_of)


def adopt_legacy_version(connection: Connection) -> bool:
    """Move a legacy record of our revision into our own version table.

    Runs in the migration's connection before alembic reads the version,
    so alembic finds our revision where it now looks and runs nothing
    again. `alembic_version` is dropped: it held our record alone.

    Returns:
        Whether there was a legacy record to move.
    """
    if sa.inspect(connection).has_table(VERSION_TABLE):
        return False
    revision = _legacy_revision(connection)
    if revision is None:
        return False
    # The shape alembic gives the version table it creates itself.
    connection.execute(
        sa.text(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(
        sa.text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"),  # noqa: S608 - a constant
        {"revision": revision},
    )
    connection.execute(sa.text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
    return True

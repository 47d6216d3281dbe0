"""Names a PostgreSQL store shares with its whole database, qualified by its schema.

A store lives in the first schema of its sessions' search path: `public`
unless `EVENTSTORE_POSTGRES_SCHEMA` (or the URL's ``options``) says
otherwise. Advisory locks and NOTIFY channels belong to the database, not
to a schema, so their names carry the schema: two stores in two schemas of
one database neither share projector leaders, rebuild locks and gates nor
wake each other's readers. In `public` the names are those of earlier
versions, so during a rolling upgrade old and new processes still take the
same locks. Both are SQL expressions, evaluated by the session that uses
them, so every query and every process derives the same names.
"""

from __future__ import annotations

from typing import Final

# '' in public; 'schema:' elsewhere (prefixes the name an advisory key hashes).
LOCK_NAMESPACE_SQL: Final = (
    "(CASE coalesce(current_schema(), 'public') WHEN 'public' THEN '' "
    "ELSE current_schema() || ':' END)"
)

# A channel name must stay under 64 bytes, which a schema name alone may
# fill: elsewhere than public it carries a digest of the schema instead.
APPENDS_CHANNEL_SQL: Final = (
    "('eventstore_appends' || CASE coalesce(current_schema(), 'public') "
    "WHEN 'public' THEN '' ELSE '_' || left(md5(current_schema()), 16) END)"
)


def lock_key_sql(kind: str, name: str) -> str:
    """The advisory lock key of `name` (an SQL expression) among locks of `kind`."""
    return (
        f"hashtextextended('eventstore-{kind}:' || {LOCK_NAMESPACE_SQL} || {name}, 0)"
    )

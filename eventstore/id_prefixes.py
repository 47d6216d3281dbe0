"""Execution ids from what people type: a whole id, or a unique prefix of it.

Tables print the first 8 hex digits of an id (the demo's, `eventstore
list`'s narrow columns); `eventstore audit 8fc36c07` should find that run,
as `git show` finds a commit. A prefix of hex digits is a range of UUIDs
(both databases order them as their 16 bytes, or their 32 hex digits), so
the lookup is a range scan of the log's stream index, not a scan of the log.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final
from uuid import UUID

import sqlalchemy as sa

from eventstore import errors
from eventstore.log import as_stream_id
from eventstore.schema import archived_streams, execution_events

if TYPE_CHECKING:
    from eventstore.backends.base import Backend

MIN_PREFIX: Final = 8
_HEX: Final = re.compile(r"[0-9a-f]+")


def _prefix_range(text: str) -> tuple[UUID, UUID] | None:
    """The lowest and highest UUID starting with `text`'s hex digits; None if not a prefix."""
    digits = text.strip().lower().replace("-", "")
    if not MIN_PREFIX <= len(digits) < 32 or not _HEX.fullmatch(digits):
        return None
    padding = 32 - len(digits)
    return UUID(digits + "0" * padding), UUID(digits + "f" * padding)


async def expand_execution_id(backend: Backend, text: str) -> UUID:
    """The execution `text` names: its whole id, or the one whose id starts with it.

    Raises:
        ValidationError: neither an id nor a prefix of at least 8 hex
            digits; a prefix no execution (in the log or archived) has; a
            prefix several have (some are named).
    """
    bounds = _prefix_range(text)
    if bounds is None:
        try:
            return as_stream_id(text)
        except errors.ValidationError:
            raise errors.ValidationError(
                f"invalid execution id {text[:40]!r}: a UUID, or its first "
                f"{MIN_PREFIX} or more hex digits"
            ) from None
    low, high = bounds
    log, tombs = execution_events.c, archived_streams.c
    query = sa.union(
        sa.select(log.stream_id.label("id"))
        .where(log.stream_id.between(low, high), log.stream_type == "execution")
        .distinct(),
        sa.select(tombs.stream_id).where(tombs.stream_id.between(low, high)),
    ).limit(3)
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        found: list[UUID] = sorted({row[0] for row in await connection.execute(query)})
    if not found:
        raise errors.ValidationError(f"no execution id starts with {text.strip()!r}")
    if len(found) > 1:
        named = ", ".join(str(identifier) for identifier in found[:2])
        raise errors.ValidationError(
            f"ambiguous execution id prefix {text.strip()!r}: {named}"
            f"{' and more' if len(found) > 2 else ''}; give more digits"
        )
    return found[0]

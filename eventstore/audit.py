"""Audit: recompute the hash chain of streams from the rows as stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore import errors, hashing
from eventstore.log import as_stream_id

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore.backends.base import Backend


async def verify_stream(backend: Backend, stream_id: UUID | str) -> bytes:
    """Verify one stream's hash chain against its stored events.

    Returns:
        The chain head: the hash of the stream's last event.

    Raises:
        ExecutionNotFound: the stream has no events.
        IntegrityError: the chain is broken: names the stream and first bad position.
    """
    stream = as_stream_id(stream_id)
    await backend.ensure_schema()
    events = await backend.read_stream(
        stream
    )  # as stored: hashes cover the stored form
    if not events:
        raise errors.ExecutionNotFound(execution_id=stream)
    return hashing.verify_chain(events)

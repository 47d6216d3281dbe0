"""The hash chain over envelopes: a new event's canonical form, a stored stream checked.

The canonical form and the chain's rule are `eventstore.hashing` (pure JSON);
this module applies them to `NewEvent` and `RecordedEvent` (ARCHITECTURE §6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore import errors
from eventstore.hashing import (
    GENESIS_HASH,
    canonical_event,
    canonical_json,
    chain_hash,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from uuid import UUID

    from eventstore.events.envelope import NewEvent, RecordedEvent


def canonical_for(stream_id: UUID, version: int, event: NewEvent) -> str:
    """The canonical JSON of a new event at `version` of a stream."""
    return canonical_event(
        stream_id=stream_id,
        version=version,
        event_id=event.event_id,
        event_type=event.type,
        schema_version=event.schema_version,
        data_json=event.data_json,
        metadata_json=event.metadata_json,
        occurred_at=event.occurred_at_text,
    )


def event_hash(previous: bytes, event: RecordedEvent) -> bytes:
    """Recompute one stored event's hash from its fields and the previous hash."""
    return chain_hash(
        previous,
        canonical_event(
            stream_id=event.stream_id,
            version=event.version,
            event_id=event.event_id,
            event_type=event.type,
            schema_version=event.schema_version,
            data_json=canonical_json(event.data),
            metadata_json=canonical_json(event.stored_metadata),
            occurred_at=event.occurred_at,
        ),
    )


# Why a chain breaks: one wording for `verify_chain` and `verify_log` alike.


def unexpected_version(version: int, expected: int) -> str:
    """A version missing or repeated before this one."""
    return f"version {version} where {expected} was expected"


def out_of_order(version: int) -> str:
    """An event whose place in the log runs against its version."""
    return f"version {version} lies before version {version - 1} in the log"


def recorded_before(version: int) -> str:
    """An event whose recorded_at lies before its predecessor's (a backdated row)."""
    return f"version {version} is recorded before version {version - 1}"


def content_changed(version: int) -> str:
    """An event whose hash does not match its stored content."""
    return f"the hash of version {version} does not match its content"


def verify_chain(events: Iterable[RecordedEvent]) -> bytes:
    """Check one stream's events, as stored (not upcast), in the order of the log.

    The events are taken in position order, as `verify_log` reads them, so a
    version recorded out of its place is a break too, named at the same
    position by both.

    Returns:
        The hash of the last event (the chain head), GENESIS_HASH for none.

    Raises:
        RecordAltered: a version is missing or repeated, or a hash does not
            match its event: names the stream and the first bad position.
    """
    previous = GENESIS_HASH
    expected_version = 1
    transaction_id = 0
    recorded_at: datetime | None = None
    for event in sorted(events, key=lambda event: event.position):
        if event.version != expected_version:
            raise errors.RecordAltered(
                stream_id=event.stream_id,
                position=event.position,
                reason=unexpected_version(event.version, expected_version),
            )
        # PostgreSQL orders the log by (epoch, transaction id, position): all
        # rise with the version in an untouched stream; the database stamps
        # recorded_at, which never runs backwards within a stream.
        if event.checkpoint.transaction_id < transaction_id:
            raise errors.RecordAltered(
                stream_id=event.stream_id,
                position=event.position,
                reason=out_of_order(event.version),
            )
        previous = event_hash(previous, event)
        if previous != event.hash:
            raise errors.RecordAltered(
                stream_id=event.stream_id,
                position=event.position,
                reason=content_changed(event.version),
            )
        if recorded_at is not None and event.recorded_at < recorded_at:
            raise errors.RecordAltered(
                stream_id=event.stream_id,
                position=event.position,
                reason=recorded_before(event.version),
            )
        transaction_id = event.checkpoint.transaction_id
        recorded_at = event.recorded_at
        expected_version += 1
    return previous

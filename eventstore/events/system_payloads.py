"""Payloads of the store's own system streams: archive receipts and chain anchors.

They live in the log beside the executions, hash-chained like them, so the
removal of archived streams and the anchored stream heads are on record
(ARCHITECTURE §6). Projections fold no state from them; a receipt tells
them which streams to forget.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID, uuid5

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from eventstore import errors
from eventstore.events.payloads import EventPayload, register_payload

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventstore.events.envelope import RecordedEvent

_NAMESPACE: Final = UUID("6f1c1f7e-3c55-4a57-9d0e-2f3f3c0b7a10")
ARCHIVE_RECEIPTS_STREAM: Final = uuid5(_NAMESPACE, "archive-receipts")
CHAIN_ANCHORS_STREAM: Final = uuid5(_NAMESPACE, "chain-anchors")


class StreamHead(BaseModel):
    """A stream's last version and the hash of that event (lowercase hex)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream_id: UUID
    version: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


@register_payload
class ArchiveReceipt(EventPayload):
    """Executions removed from the log by the archive path, and where they went."""

    event_type = "ArchiveReceipt"

    file: str = Field(description="the archive file's name")
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    finished_before: datetime
    events: int = Field(ge=1)
    streams: list[StreamHead] = Field(min_length=1)


def streams_archived_by(events: Iterable[RecordedEvent]) -> list[UUID]:
    """The streams that the archive receipts among `events` say were removed.

    How a projection learns of an archive: from the receipt in the log, in
    order with everything else it folds (ARCHITECTURE §6), so that a table
    the archive did not clean itself (a rebuild's shadow, a projection of
    the user's own) forgets the removed streams too.

    Raises:
        EventNotApplicable: a receipt that does not read as one (a poison event).
    """
    removed: list[UUID] = []
    for event in events:
        if event.stream_id != ARCHIVE_RECEIPTS_STREAM:
            continue
        try:
            receipt = ArchiveReceipt.model_validate(event.data)
        except pydantic.ValidationError as exc:
            raise errors.EventNotApplicable(
                stream_id=event.stream_id,
                version=event.version,
                position=event.position,
                event_id=event.event_id,
                reason=f"{event.type} is not a readable archive receipt: {exc}",
            ) from exc
        removed.extend(stream.stream_id for stream in receipt.streams)
    return removed


@register_payload
class ChainAnchor(EventPayload):
    """A digest over every execution stream's head at a checkpoint of the log.

    ``heads`` holds only the streams whose head changed since the previous
    anchor and ``removed`` those that an archive receipt took away, so a
    verifier rebuilds the full set of heads by folding the anchors in order.
    ``digest`` is sha256 over that full set (docs/AUDIT.md); ``hmac``, when
    the operator gave a key, signs the anchor's canonical JSON without it.
    """

    event_type = "ChainAnchor"

    transaction_id: int = Field(ge=0)
    position: int = Field(ge=0)
    streams: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    heads: list[StreamHead]
    removed: list[UUID]
    hmac: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

"""Payloads of the store's own system streams: archive receipts and chain anchors.

They live in the log beside the executions, hash-chained like them, so the
removal of archived streams and the anchored stream heads are on record
(ARCHITECTURE §6). The projector skips system streams.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from eventstore.events.payloads import EventPayload, register_payload

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

"""Chain anchors: a signed digest over every stream's head at a point of the log.

A hash chain proves a stream was not altered inside; it cannot show that a
whole stream was deleted, or its tail cut off. An anchor records every
execution stream's head (version and hash) at a gap-safe checkpoint, as a
`ChainAnchor` event in a system stream. Each anchor stores only the heads
that changed since the previous one; folding the anchors in order gives the
full set, whose sha256 is the anchor's digest. With an operator's key (never
stored in the database) the anchor also carries an HMAC, so whoever can
write the database still cannot forge one.

Verification folds the anchors, checks every signature, and compares the
last anchor's heads with the log at its checkpoint: a stream missing (and
not archived by a later receipt), cut short, rewritten or slipped in before
the checkpoint is named with the anchor's position.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from eventstore import errors, hashing
from eventstore.audit.receipts import verify_receipts
from eventstore.events.checkpoint import Checkpoint
from eventstore.events.envelope import NewEvent
from eventstore.events.system_payloads import (
    ARCHIVE_RECEIPTS_STREAM,
    CHAIN_ANCHORS_STREAM,
    ArchiveReceipt,
    ChainAnchor,
    StreamHead,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from uuid import UUID

    from eventstore.audit.parts import AuditedStore
    from eventstore.backends.base import Backend
    from eventstore.events.envelope import RecordedEvent

ANCHORER: Final = "anchor"
Heads = dict["UUID", tuple[int, bytes]]


def heads_digest(heads: Mapping[UUID, tuple[int, bytes]]) -> str:
    """sha256 over one line ``<stream id> <version> <hash hex>`` per stream, by id."""
    digest = hashlib.sha256()
    for stream_id in sorted(heads, key=str):
        version, head = heads[stream_id]
        digest.update(f"{stream_id} {version} {head.hex()}\n".encode())
    return digest.hexdigest()


def signature(anchor: ChainAnchor, key: bytes) -> str:
    """HMAC-SHA256 of the anchor's canonical JSON without its ``hmac`` field."""
    body = hashing.canonical_json(anchor.model_dump(mode="json", exclude={"hmac"}))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


@dataclass
class _History:
    """The anchors and receipts of the log, folded."""

    anchors: list[tuple[RecordedEvent, ChainAnchor]] = field(default_factory=list)
    receipts: list[tuple[Checkpoint, ArchiveReceipt]] = field(default_factory=list)

    def heads_after(self, count: int) -> Heads:
        """The full set of heads recorded by the first `count` anchors."""
        heads: Heads = {}
        for _, anchor in self.anchors[:count]:
            for stream_id in anchor.removed:
                heads.pop(stream_id, None)
            heads.update(_as_heads(anchor.heads))
        return heads

    def archived_after(self, checkpoint: Checkpoint | None) -> set[UUID]:
        """The streams that receipts recorded after `checkpoint` removed."""
        return {
            head.stream_id
            for at, receipt in self.receipts
            if checkpoint is None or at > checkpoint
            for head in receipt.streams
        }


async def _history(backend: Backend) -> _History:
    history = _History()
    for event in await backend.read_stream_as_stored(CHAIN_ANCHORS_STREAM):
        history.anchors.append((event, ChainAnchor.model_validate(event.data)))
    for event in await backend.read_stream_as_stored(ARCHIVE_RECEIPTS_STREAM):
        receipt = ArchiveReceipt.model_validate(event.data)
        history.receipts.append((event.checkpoint, receipt))
    return history


def _by_id(item: tuple[UUID, tuple[int, bytes]]) -> str:
    return str(item[0])


def _as_heads(heads: Iterable[StreamHead]) -> Heads:
    return {head.stream_id: (head.version, bytes.fromhex(head.hash)) for head in heads}


def _compare(
    anchored: Heads, actual: Heads, *, skip: set[UUID], position: int
) -> list[errors.RecordAltered]:
    """The differences between anchored heads and the log's heads at the anchor."""
    problems = []
    for stream_id, (version, head) in anchored.items():
        if stream_id in skip:
            continue
        found = actual.get(stream_id)
        if found is None:
            reason = (
                f"the stream is missing: the anchor at position {position} "
                f"recorded it at version {version}"
            )
        elif found[0] < version:
            reason = (
                f"the stream was cut short: version {found[0]} where the anchor at "
                f"position {position} recorded {version}"
            )
        elif found[0] > version:
            reason = (
                f"version {found[0]} lies before the anchor at position {position}, "
                f"which recorded {version}: events were slipped in"
            )
        elif found[1] != head:
            reason = f"its head differs from the anchor at position {position}"
        else:
            continue
        problems.append(
            errors.RecordAltered(stream_id=stream_id, position=None, reason=reason)
        )
    problems.extend(
        errors.RecordAltered(
            stream_id=stream_id,
            position=None,
            reason=f"the stream lies before the anchor at position {position} "
            "but the anchor does not hold it: it was slipped in",
        )
        for stream_id in actual.keys() - anchored.keys()
    )
    return problems


async def create_anchor(
    store: AuditedStore, *, key: bytes | None = None
) -> ChainAnchor:
    """Anchor every execution stream's head at the log's current checkpoint.

    The new heads are first checked against the previous anchors, so an
    anchor is never taken over a log that lost anchored streams.

    Returns:
        The anchor as appended.

    Raises:
        RecordAltered: the log no longer holds what earlier anchors recorded.
        ConcurrencyError: another anchor was appended at the same time.
    """
    backend = store.backend
    await backend.ensure_schema()
    history = await _history(backend)
    previous = history.heads_after(len(history.anchors))
    last_checkpoint = history.anchors[-1][0].checkpoint if history.anchors else None
    at = await backend.head_checkpoint() or Checkpoint(0, 0)
    heads = await backend.stream_heads(at)
    archived = history.archived_after(last_checkpoint)
    for stream_id, (version, head) in previous.items():
        if stream_id in archived:
            continue
        found = heads.get(stream_id)
        if (
            found is None
            or found[0] < version
            or (found[0] == version and found[1] != head)
        ):
            raise errors.RecordAltered(
                stream_id=stream_id,
                position=None,
                reason=f"the log no longer holds version {version} of this stream as "
                "the previous anchor recorded it: verify the log before anchoring",
            )
    removed = sorted(previous.keys() - heads.keys(), key=str)
    anchor = ChainAnchor(
        transaction_id=at.transaction_id,
        position=at.position,
        streams=len(heads),
        digest=heads_digest(heads),
        heads=[
            StreamHead(stream_id=stream_id, version=version, hash=head.hex())
            for stream_id, (version, head) in sorted(heads.items(), key=_by_id)
            if previous.get(stream_id) != (version, head)
        ],
        removed=removed,
    )
    if key is not None:
        anchor = anchor.model_copy(update={"hmac": signature(anchor, key)})
    await store.log.append_system(
        CHAIN_ANCHORS_STREAM,
        [NewEvent.of(anchor, metadata={"actor": ANCHORER})],
        expected_version=len(history.anchors),
    )
    return anchor


@dataclass
class AnchorReport:
    """What `verify_anchors` checked and found."""

    anchors: int = 0
    signed: int = 0
    signatures_checked: int = 0
    last_position: int | None = None
    problems: list[errors.RecordAltered] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every anchor verified."""
        return not self.problems


async def verify_anchors(backend: Backend, *, key: bytes | None = None) -> AnchorReport:
    """Check the anchors' signatures and the log against the last anchor.

    The archive receipts are checked against the archive's tombstones too
    (`eventstore.audit.receipts`): a forged receipt is a problem here.

    Returns:
        The counts and every problem found (stream and reason).
    """
    await backend.ensure_schema()
    report = AnchorReport()
    report.problems.extend(await verify_receipts(backend))
    history = await _history(backend)
    report.anchors = len(history.anchors)
    for recorded, anchor in history.anchors:
        report.signed += anchor.hmac is not None
        if key is None:
            continue
        if anchor.hmac is None or not hmac.compare_digest(
            anchor.hmac, signature(anchor, key)
        ):
            report.problems.append(
                errors.RecordAltered(
                    stream_id=CHAIN_ANCHORS_STREAM,
                    position=recorded.position,
                    reason="the anchor's signature does not verify with this key"
                    if anchor.hmac
                    else "the anchor is not signed",
                )
            )
        report.signatures_checked += 1
    if not history.anchors:
        return report
    last, anchor = history.anchors[-1]
    report.last_position = last.position
    anchored = history.heads_after(len(history.anchors))
    if heads_digest(anchored) != anchor.digest or len(anchored) != anchor.streams:
        report.problems.append(
            errors.RecordAltered(
                stream_id=CHAIN_ANCHORS_STREAM,
                position=last.position,
                reason="the anchors' heads do not add up to the last anchor's digest",
            )
        )
        return report
    at = Checkpoint(anchor.transaction_id, anchor.position)
    actual = await backend.stream_heads(at)
    report.problems.extend(
        _compare(
            anchored,
            actual,
            skip=history.archived_after(last.checkpoint),
            position=last.position,
        )
    )
    return report

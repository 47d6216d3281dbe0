"""Archive receipts checked against the tombstones the archive left (migration 0006).

A receipt says which streams an archive removed. The archive writes it in
the same transaction as one tombstone per removed stream (its id and head),
and only the archivist may write either. A receipt whose streams have no
matching tombstone, or a tombstone no receipt names, is a forgery or a
tampered record: `verify` reports both, and `audit --archive` refuses a file
whose receipt does not hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pydantic
import sqlalchemy as sa

from eventstore import errors
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM, ArchiveReceipt
from eventstore.schema import archived_streams

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventstore.backends.base import Backend

Tombstones = dict["UUID", tuple[int, bytes, str]]  # version, head hash, archive file


async def tombstones(backend: Backend) -> Tombstones:
    """Every stream the archive removed: its last version, head hash and file."""
    table = archived_streams
    async with backend.connect_read() as connection:
        rows = await connection.execute(
            sa.select(
                table.c.stream_id, table.c.version, table.c.hash, table.c.archive_file
            )
        )
        return {row[0]: (row[1], bytes(row[2]), row[3]) for row in rows}


# Ids per SELECT ... IN: below both drivers' limits on bound parameters.
_IDS_PER_QUERY = 500


async def tombstoned(backend: Backend, stream_ids: Sequence[UUID]) -> set[UUID]:
    """Those of `stream_ids` the archive has removed."""
    table = archived_streams
    found: set[UUID] = set()
    async with backend.connect_read() as connection:
        for start in range(0, len(stream_ids), _IDS_PER_QUERY):
            chunk = stream_ids[start : start + _IDS_PER_QUERY]
            rows = await connection.execute(
                sa.select(table.c.stream_id).where(table.c.stream_id.in_(chunk))
            )
            found.update(row[0] for row in rows)
    return found


def receipt_problem(receipt: ArchiveReceipt, stones: Tombstones) -> str | None:
    """Why a receipt does not match the tombstones, or None when it does."""
    for head in receipt.streams:
        stone = stones.get(head.stream_id)
        if stone is None:
            return (
                f"the receipt for {receipt.file} names stream {head.stream_id}, "
                "which no archive removed"
            )
        if stone != (head.version, bytes.fromhex(head.hash), receipt.file):
            return (
                f"the receipt for {receipt.file} does not match the tombstone of "
                f"stream {head.stream_id}"
            )
    return None


async def verify_receipts(backend: Backend) -> list[errors.RecordAltered]:
    """Every receipt against the tombstones, and every tombstone against a receipt."""
    stones = await tombstones(backend)
    named: set[UUID] = set()
    problems: list[errors.RecordAltered] = []
    for recorded in await backend.read_stream_as_stored(ARCHIVE_RECEIPTS_STREAM):
        try:
            receipt = ArchiveReceipt.model_validate(recorded.data)
        except pydantic.ValidationError:
            reason: str | None = f"{recorded.type} is not an archive receipt"
        else:
            reason = receipt_problem(receipt, stones)
            named.update(head.stream_id for head in receipt.streams)
        if reason is not None:
            problems.append(
                errors.RecordAltered(
                    stream_id=ARCHIVE_RECEIPTS_STREAM,
                    position=recorded.position,
                    reason=reason,
                )
            )
    problems.extend(
        errors.RecordAltered(
            stream_id=stream_id,
            position=None,
            reason="archived (a tombstone) without a receipt that names it",
        )
        for stream_id in sorted(stones.keys() - named, key=str)
    )
    return problems

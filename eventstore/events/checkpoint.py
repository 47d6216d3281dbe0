"""The checkpoint: an ordered place in the global log, and its one decoder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from decimal import Decimal

EPOCH_SHIFT: Final = 64  # xid8 is 64 bits wide


class Checkpoint(NamedTuple):
    """An ordered place in the global log: read_all(after=...) resumes after it.

    On PostgreSQL the pair (transaction id, position) orders the log, so that
    no event committed out of position order is ever skipped; on SQLite the
    transaction id is 0 and the position alone orders the log.

    The transaction part is led by the log's restore epoch (epoch * 2**64 +
    xid): a logical restore into another cluster sets the transaction counter
    back, and the events written after it start a new epoch, which sorts
    after every event before the restore. Without a restore the epoch is 0
    and the transaction part is the plain transaction id.
    """

    transaction_id: int
    position: int

    @classmethod
    def of(cls, *, epoch: int, transaction_id: int, position: int) -> Checkpoint:
        """The checkpoint of an event written in `epoch` by `transaction_id`."""
        return cls((epoch << EPOCH_SHIFT) | transaction_id, position)

    @classmethod
    def stored(cls, transaction_id: int | Decimal | None, position: int) -> Checkpoint:
        """A checkpoint as a table keeps it (`projection_checkpoints`): the one decoder.

        The transaction part is a numeric order key on PostgreSQL and NULL on
        SQLite; the position an integer.
        """
        return cls(int(transaction_id or 0), int(position))

    @property
    def epoch(self) -> int:
        """The restore epoch of the event at this checkpoint."""
        return self.transaction_id >> EPOCH_SHIFT

    @property
    def xid(self) -> int:
        """The transaction id within its epoch."""
        return self.transaction_id & ((1 << EPOCH_SHIFT) - 1)

"""The PostgreSQL log's order, as SQL fragments and parameters (ARCHITECTURE §1, §7).

The log is ordered by (epoch, transaction_id, position); readers stay below
the transaction horizon and resume after a checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from eventstore.events.checkpoint import Checkpoint

MAX_POSITION: Final = 2**63 - 1

MAX_XID8: Final = 2**64 - 1

MAX_EPOCH: Final = 2**31 - 1

FAR_FUTURE: Final = datetime(9999, 12, 31, tzinfo=UTC)


def in_partition(count: str, index: str) -> str:
    """The SQL condition that a row's stream is in partition `index` of `count`.

    The rule of eventstore/partitions.py (the UUID's last 32 bits, mod the
    count), from the UUID's bytes: every partitioned read tests every row,
    and this costs half of the same number taken from the UUID's text.
    """
    low_bits = (
        "get_byte(uuid_send(stream_id), 12)::bigint * 16777216"
        " + get_byte(uuid_send(stream_id), 13) * 65536"
        " + get_byte(uuid_send(stream_id), 14) * 256"
        " + get_byte(uuid_send(stream_id), 15)"
    )
    return f"({low_bits}) % {count} = {index}"


COLUMNS: Final = (
    "position, stream_id, version, stream_type, event_id, type, schema_version, "
    "data, metadata, occurred_at, recorded_at, transaction_id, hash, epoch"
)

# The log is ordered by (epoch, transaction_id, position). Only transactions
# below the snapshot's xmin are finished; their events can no longer appear
# behind the checkpoint (ARCHITECTURE §1). Every event of an earlier restore epoch
# was committed on the cluster it came from, so the horizon bounds only the
# current epoch (migration 0006).
HORIZON: Final = (
    "(epoch, transaction_id) < (pg_sequence_last_value('execution_events_epoch_seq'), "
    "pg_snapshot_xmin(pg_current_snapshot()))"
)

AFTER: Final = "(epoch, transaction_id, position) > ($1, $2::xid8, $3)"

ORDER: Final = "ORDER BY epoch, transaction_id, position"


def order_key(checkpoint: Checkpoint) -> tuple[int, int, int]:
    """A checkpoint as the (epoch, xid, position) parameters of the log's order."""
    return checkpoint.epoch, checkpoint.xid, checkpoint.position

"""The one SQLAlchemy MetaData of the store: table and column names of ARCHITECTURE §9.

Migrations build the same schema from literal DDL; the migration test proves
that `upgrade head` equals this MetaData.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from eventstore.sqltypes import (
    CheckpointOrderKey,
    Hash,
    JSONDocument,
    NullableJSONDocument,
    Position,
    TransactionId,
    UTCDateTime,
    WriteTime,
)
from eventstore.status import SETS_STATUS

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = sa.MetaData(naming_convention=NAMING_CONVENTION)

STATUS_EVENTS_CONDITION: Final = "type IN ({})".format(
    ", ".join(f"'{name}'" for name in SETS_STATUS)
)

_uuid = sa.Uuid(as_uuid=True)
_now = sa.func.current_timestamp()

threads: Final = sa.Table(
    "threads",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=_now),
)

messages: Final = sa.Table(
    "messages",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column(
        "thread_id", _uuid, sa.ForeignKey("threads.id"), nullable=False, index=True
    ),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=_now),
)

graphs: Final = sa.Table(
    "graphs",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("definition", JSONDocument, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=_now),
)

execution_events: Final = sa.Table(
    "execution_events",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=True),
    sa.Column("stream_id", _uuid, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("stream_type", sa.String(32), nullable=False),
    sa.Column("event_id", _uuid, nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("data", JSONDocument, nullable=False),
    sa.Column("metadata", JSONDocument, nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False, server_default=WriteTime()),
    # PostgreSQL: pg_current_xact_id() of the writer; orders the log with the
    # position (ARCHITECTURE §1). NULL on SQLite, whose position order is commit order.
    sa.Column("transaction_id", TransactionId, nullable=True),
    sa.Column("hash", Hash, nullable=False),
    # PostgreSQL: the restore epoch the row was written in; the log is
    # ordered by (epoch, transaction_id, position) (revision 0006). 0 on SQLite.
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("stream_id", "version"),
    sa.UniqueConstraint("event_id"),
    sa.Index(None, "epoch", "transaction_id", "position"),
    # The status-changing events per stream: the store-wide "as of" and the
    # archive's choice of finished executions are one index-only scan of it
    # (it holds every column they read; revision 0005).
    sa.Index(
        "ix_execution_events_status_history",
        "stream_id",
        "version",
        "type",
        "position",
        "recorded_at",
        "occurred_at",
        postgresql_where=sa.text(STATUS_EVENTS_CONDITION),
        sqlite_where=sa.text(STATUS_EVENTS_CONDITION),
    ),
    sqlite_autoincrement=True,  # positions are never reused, even after archiving
)

# Written and removed inside an archive transaction: the row opens the
# immutability trigger for that transaction's DELETEs only (ARCHITECTURE §6).
execution_events_archive_guard: Final = sa.Table(
    "execution_events_archive_guard",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.CheckConstraint("id = 1", name="one_row"),
)

# One row per restore epoch of the log (PostgreSQL; SQLite stays at 0): a
# logical restore into another cluster sets the transaction counter back, so
# the log goes on in a new epoch that sorts after the old one (revision 0006).
execution_events_epochs: Final = sa.Table(
    "execution_events_epochs",
    metadata,
    sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("started_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("previous_transaction_id", sa.Text, nullable=True),
)

# Tombstones: every stream the archive removed, with its head. No stream may
# start again under such an id, and `verify` checks the receipts against them.
archived_streams: Final = sa.Table(
    "archived_streams",
    metadata,
    sa.Column("stream_id", _uuid, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("hash", Hash, nullable=False),
    sa.Column("archive_file", sa.Text, nullable=False),
    sa.Column("archived_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
)

executions: Final = sa.Table(
    "executions",
    metadata,
    sa.Column("id", _uuid, primary_key=True),
    sa.Column(
        "message_id", _uuid, sa.ForeignKey("messages.id"), nullable=False, index=True
    ),
    sa.Column("graph_id", _uuid, sa.ForeignKey("graphs.id"), nullable=False),
    sa.Column(
        "thread_id", _uuid, sa.ForeignKey("threads.id"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("inputs", NullableJSONDocument, nullable=True),
    sa.Column("result", NullableJSONDocument, nullable=True),
    sa.Column("error", NullableJSONDocument, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("cancel_requested_at", UTCDateTime, nullable=True),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("retry_of", _uuid, nullable=True),
    sa.Column("queue_ms", sa.BigInteger, nullable=True),
    sa.Column("run_ms", sa.BigInteger, nullable=True),
    sa.Column("total_ms", sa.BigInteger, nullable=True),
    sa.Column("steps_completed", sa.Integer, nullable=False),
    sa.Column("metrics", JSONDocument, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
    # Labels and statistics, revision 0010: the current labels; the first step's time.
    sa.Column("labels", JSONDocument, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("first_step_at", UTCDateTime, nullable=True),
    # Keyset pagination walks (created_at, id); a status or graph filter
    # walks its own runs in that order (revision 0011).
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "status", "created_at", "id"),
    # Counts by status read this small deduplicated index only (0012).
    sa.Index(None, "status"),
    sa.Index(None, "graph_id", "created_at", "id"),
    # Label filters are containment, which GIN answers (PostgreSQL only).
    sa.Index(
        "ix_executions_labels",
        "labels",
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    ).ddl_if(dialect="postgresql"),
)

# Indexes that exist on PostgreSQL only (a schema comparison on SQLite skips them).
POSTGRES_ONLY_INDEXES: Final = frozenset({"ix_executions_labels"})

# A rebuild keeps its own checkpoint row beside the live ones while it folds
# into the shadow table: `<projection>:rebuild`, partition 0.
SHADOW_CHECKPOINT_SUFFIX: Final = ":rebuild"

projection_checkpoints: Final = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    # The checkpoint's order key: the transaction id, led by its epoch.
    sa.Column("transaction_id", CheckpointOrderKey, nullable=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, server_default=_now),
)

execution_leases: Final = sa.Table(
    "execution_leases",
    metadata,
    # A heartbeat is a lease, not an event: the log should not fill with them.
    sa.Column("execution_id", _uuid, primary_key=True),
    sa.Column("worker_id", sa.String(200), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False, index=True),
    # Set when a reaper claims the run: no heartbeat renews it after that.
    sa.Column("reaped_at", UTCDateTime, nullable=True),
)

verify_runs: Final = sa.Table(
    "verify_runs",
    metadata,
    # One row per finished `eventstore verify`: its record, not the log's.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("streams", sa.BigInteger, nullable=False),
    sa.Column("projection_checked", sa.Boolean, nullable=False),
    sa.Column("problems", sa.Integer, nullable=False),
    sa.Column("first_problem", sa.Text, nullable=True),
)

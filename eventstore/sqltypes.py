"""Column types that carry the dialect differences, so tables are written once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import TypeDecorator, UserDefinedType
from typing_extensions import override

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC; naive values are refused.

    PostgreSQL keeps `timestamptz`; SQLite keeps text, so the zone is put
    back on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @override
    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("naive datetime: a timezone-aware value is required")
        return value.astimezone(UTC)

    @override
    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id, which SQLAlchemy does not know.

    Registered with the PostgreSQL dialect's reflection so that the migration
    drift check and `alembic check` see the column type without a warning.
    """

    cache_ok = True

    @override
    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


postgresql.base.ischema_names["xid8"] = Xid8

TransactionId = sa.BigInteger().with_variant(Xid8(), "postgresql")
"""The transaction that wrote a row: xid8 on PostgreSQL, unused (NULL) on SQLite."""

CheckpointOrderKey = sa.BigInteger().with_variant(sa.Numeric(40, 0), "postgresql")
"""A checkpoint's transaction part: epoch * 2**64 + xid on PostgreSQL (which
outgrows xid8 once a restore started a new epoch); 0 on SQLite."""

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""A log position: SQLite only autoincrements an INTEGER PRIMARY KEY."""

JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""A JSON document: jsonb on PostgreSQL, text on SQLite."""


class TextJSON(sa.JSON):
    """JSON that SQLite keeps as text: declared JSON_TEXT, so of TEXT affinity.

    A column declared JSON has NUMERIC affinity in SQLite: a document that
    is a bare number is stored as a number, and one beyond 64 bits or
    written with an exponent comes back as a float of another value
    (9223372036854776000 as 9.223372036854776e+18). Objects and arrays were
    never affected; the executions' inputs and result may be bare numbers.
    """


@compiles(TextJSON, "sqlite")
def _text_json_sqlite(element: TextJSON, compiler: Any, **kw: Any) -> str:
    return "JSON_TEXT"


# Reflected as itself (the migration drift check compares the types).
sqlite.base.ischema_names["JSON_TEXT"] = TextJSON

NullableJSONDocument = TextJSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)
"""A JSON document where Python None is SQL NULL (so `IS NULL` finds it), any
JSON value kept exactly on both databases (see TextJSON)."""

Hash = sa.LargeBinary(32)
"""A sha256 digest."""


class WriteTime(sa.sql.functions.GenericFunction[datetime]):
    """The time a row is written, as a column default: one per statement.

    PostgreSQL's `now()` is the transaction's start, which may come long
    before the row; `statement_timestamp()` is the writing statement's, the
    same for every row it writes (an append is one moment). The append
    function stamps its rows itself, after its locks (migration 0004).
    SQLite's writer sets the time it writes.
    """

    type = UTCDateTime()
    inherit_cache = True
    name = "write_time"


@compiles(WriteTime)
def _write_time(element: WriteTime, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(WriteTime, "postgresql")
def _write_time_postgresql(element: WriteTime, compiler: Any, **kw: Any) -> str:
    return "statement_timestamp()"

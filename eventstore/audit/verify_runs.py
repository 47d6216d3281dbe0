"""The record of finished verifications: what the last `eventstore verify` found.

A row per run in `verify_runs`, not an event: a verification is about the
log, not part of its history, and an event would change what the next
verification reads. The console's /system page shows the newest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore.schema import verify_runs as table

if TYPE_CHECKING:
    from datetime import datetime

    from eventstore.backends.base import Backend

# Enough of the first problem to name it; the command's output has them all.
FIRST_PROBLEM_CHARS = 1000


@dataclass(frozen=True)
class VerifyRun:
    """One finished verification.

    Attributes:
        started_at: when it began reading.
        finished_at: when it had its answer.
        events: the events whose chains it recomputed.
        streams: the streams they belong to.
        projection_checked: whether it also compared the projection with a
            fresh fold (not with `--log-only`).
        problems: how many problems it named; 0: everything verified.
        first_problem: the first of them, None when there was none.
    """

    started_at: datetime
    finished_at: datetime
    events: int
    streams: int
    projection_checked: bool
    problems: int
    first_problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether everything verified."""
        return self.problems == 0


async def record_verify_run(backend: Backend, run: VerifyRun) -> None:
    """Keep `run` as the newest verification."""
    first = run.first_problem
    row = dataclasses.asdict(run) | {
        # PostgreSQL's text holds no NUL, and a problem may quote user data.
        "first_problem": None
        if first is None
        else first.replace("\x00", "")[:FIRST_PROBLEM_CHARS]
    }
    await backend.ensure_schema()
    async with backend.begin_write() as connection:
        await connection.execute(sa.insert(table).values(**row))


async def last_verify_run(backend: Backend) -> VerifyRun | None:
    """The newest finished verification; None when none was recorded."""
    columns = [table.c[field.name] for field in dataclasses.fields(VerifyRun)]
    query = sa.select(*columns).order_by(table.c.id.desc()).limit(1)
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        row = (await connection.execute(query)).one_or_none()
    return None if row is None else VerifyRun(**row._asdict())

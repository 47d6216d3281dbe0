"""The filters of a run query (README, "Reading the projection"), checked and turned into SQL conditions.

One definition for `ExecutionsView.list`, `count`, `count_by_status` and the
statistics, so every query selects runs the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypedDict

import sqlalchemy as sa

from eventstore import ExecutionStatus, as_stream_id, errors
from eventstore.projecting import checked_labels, checked_moment
from eventstore.schema import executions as table
from eventstore.schema import graphs

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore.projecting import ProjectionContext


class RunFilters(TypedDict, total=False):
    """What a run query may filter on; every filter given must hold.

    Keys:
        status: one status, or a collection of them.
        labels: label pairs that must all match (`{"customer": "42"}`).
        graph_id: runs of this graph.
        graph_name: runs of graphs of this name (any version).
        graph_version: runs of graphs of this version.
        message_id: runs replying to this message.
        thread_id: runs in this thread.
        worker_id: runs started by this worker.
        since: created at or after: a timezone-aware datetime, or a
            `timedelta` meaning that long before now.
        until: created before (a datetime, or a timedelta before now).
        created_after: created strictly after this datetime.
        created_before: created strictly before this datetime.
    """

    status: ExecutionStatus | str | Iterable[ExecutionStatus | str] | None
    labels: Mapping[str, str] | None
    graph_id: UUID | str | None
    graph_name: str | None
    graph_version: str | None
    message_id: UUID | str | None
    thread_id: UUID | str | None
    worker_id: str | None
    since: datetime | timedelta | None
    until: datetime | timedelta | None
    created_after: datetime | None
    created_before: datetime | None


FILTERS: Final = frozenset(RunFilters.__annotations__)
# A timedelta this long or longer reaches before year 1: refused, not an error.
_LONGEST: Final = timedelta(days=365 * 1000)


def statuses(status: object) -> list[str]:
    """The status values one status, or an iterable of them, names (none: no run)."""
    given = (
        list(status)
        if isinstance(status, Iterable) and not isinstance(status, str)
        else [status]
    )
    known = {s.value for s in ExecutionStatus}
    values = [s.value if isinstance(s, ExecutionStatus) else s for s in given]
    if not all(isinstance(v, str) and v in known for v in values):
        raise errors.ValidationError(
            f"unknown status in {status!r}: one or more of "
            f"{', '.join(sorted(known))} is required"
        )
    return [str(v) for v in values]


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(f"invalid {name} {value!r}: a non-empty string")
    return value


def _id(name: str, value: object) -> UUID:
    try:
        return as_stream_id(value)  # type: ignore[arg-type]
    except errors.ValidationError as exc:
        raise errors.ValidationError(f"invalid {name}: {exc}") from None


def _moment(name: str, value: object, now: datetime) -> datetime | None:
    if isinstance(value, timedelta):
        if not timedelta(0) <= value < _LONGEST:
            raise errors.ValidationError(
                f"invalid {name} {value}: a duration of 0 or more, under 1000 years"
            )
        return now - value
    return checked_moment(name, value)


def conditions(
    filters: Mapping[str, object],
    context: ProjectionContext,
    *,
    now: datetime | None = None,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions on `executions` that `filters` (RunFilters) ask for.

    Raises:
        ValidationError: an unknown filter, or a bad value (named).
    """
    unknown = sorted(set(filters) - FILTERS)
    if unknown:
        raise errors.ValidationError(
            f"unknown filter {unknown[0]!r}: the filters are {', '.join(sorted(FILTERS))}"
        )
    now = now or datetime.now(UTC)
    given: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    where: list[sa.ColumnElement[bool]] = []
    if "status" in given:
        where.append(table.c.status.in_(statuses(given["status"])))
    if "labels" in given:
        labels = checked_labels("labels", given["labels"])
        if labels:
            where.append(context.labels_match(table.c.labels, labels))
    where.extend(
        table.c[name] == _id(name, given[name])
        for name in ("graph_id", "message_id", "thread_id")
        if name in given
    )
    if "worker_id" in given:
        where.append(table.c.worker_id == _text("worker_id", given["worker_id"]))
    graph = [
        graphs.c[column] == _text(name, given[name])
        for name, column in (("graph_name", "name"), ("graph_version", "version"))
        if name in given
    ]
    if graph:
        # A few hundred graphs: the matching ids, then the runs' graph index.
        where.append(table.c.graph_id.in_(sa.select(graphs.c.id).where(*graph)))
    created = table.c.created_at
    for name, at_or_after, inclusive in (
        ("since", True, True),
        ("until", False, False),
        ("created_after", True, False),
        ("created_before", False, False),
    ):
        if name not in given:
            continue
        if name in ("since", "until"):
            moment = _moment(name, given[name], now)
        else:
            moment = checked_moment(name, given[name])
        assert moment is not None  # noqa: S101 - None was left out above
        if at_or_after:
            where.append(created >= moment if inclusive else created > moment)
        else:
            where.append(created < moment)
    return where

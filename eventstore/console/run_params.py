"""Query parameters of the console's run queries, as `RunFilters` (README, "Reading the projection").

The same words as `eventstore list`: `status` and `label` repeated (a label
as ``KEY:VALUE``), `graph`, `graph_version`, `worker`, `since` (a duration
such as ``2h``, or a time) and `until` (a time). A parameter the query does
not know is refused, so a misspelt filter never silently widens it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from eventstore import errors
from eventstore.console.auth import TOKEN_PARAMETER
from eventstore.parsing import parse_label_pairs, parse_since, parse_time

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.datastructures import QueryParams

FILTERS: Final = frozenset(
    {"status", "label", "graph", "graph_version", "worker", "since", "until"}
)
PAGING: Final = frozenset({"order", "limit", "cursor"})
MAX_LIMIT: Final = 1000


def check_known(params: QueryParams, known: Iterable[str]) -> None:
    """Refuse parameters outside `known`.

    Raises:
        ValidationError: naming the first unknown parameter.
    """
    allowed = {*known, TOKEN_PARAMETER}  # the console's own (auth.py)
    for name in params:
        if name not in allowed:
            listed = ", ".join(sorted(allowed - {TOKEN_PARAMETER})) or "none"
            raise errors.ValidationError(
                f"unknown parameter {name[:40]!r}; known: {listed}"
            )


def run_filters(params: QueryParams) -> dict[str, Any]:
    """The filters of the query string, as `ExecutionsView.list` takes them.

    Raises:
        ValidationError: a label without ``:``, a key given twice, a bad
            time or duration, or a parameter given twice that takes one value.
    """
    since, until = single(params, "since"), single(params, "until")
    return {
        "status": _given(params, "status") or None,
        "labels": parse_label_pairs(
            _given(params, "label"), separator=":", option="label"
        ),
        "graph_name": single(params, "graph"),
        "graph_version": single(params, "graph_version"),
        "worker_id": single(params, "worker"),
        "since": None if since is None else parse_since(since, "since"),
        "until": None if until is None else parse_time(until, "until"),
    }


def page_params(params: QueryParams) -> dict[str, Any]:
    """`order`, `limit` and `cursor`, as `ExecutionsView.list` takes them.

    Raises:
        ValidationError: a limit that is not a whole number from 1 to 1000.
    """
    limit = single(params, "limit")
    if limit is not None and not limit.isdecimal():
        raise errors.ValidationError(
            f"invalid limit {limit[:40]!r}: a number from 1 to {MAX_LIMIT}"
        )
    return {
        "order": single(params, "order") or "newest",
        "limit": 50 if limit is None else int(limit),
        "cursor": single(params, "cursor"),
    }


def _given(params: QueryParams, name: str) -> list[str]:
    # A form sends its empty fields too: an empty value is no value.
    return [value for value in params.getlist(name) if value]


def single(params: QueryParams, name: str) -> str | None:
    """A parameter that takes one value; None when absent or empty.

    Raises:
        ValidationError: it was given more than once.
    """
    values = _given(params, name)
    if len(values) > 1:
        raise errors.ValidationError(f"parameter {name!r} given {len(values)} times")
    return values[0] if values else None

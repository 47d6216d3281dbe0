"""`created_fields` without pydantic equals the model's validation, or defers to it.

The fold builds a new execution from ExecutionCreated's data with
`created_fields`; for data as the lifecycle writes it, it skips the
model's validation, and the rebuild's fold in PostgreSQL takes the ids
as text (`written_created`). For generated data, spelled as the
lifecycle and as others might, the quick ways must give exactly the
validated fields (the same keys, values and types; the ids' canonical
text) or step aside.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from eventstore import ValidationError
from eventstore.fold import (
    _created_as_written,
    _created_validated,
    created_fields,
    written_created,
)

IDS: Final = st.uuids().flatmap(
    lambda known: st.sampled_from(
        [str(known)] * 12 + [str(known).upper(), known.hex, "{" + str(known) + "}"]
    )
)
DATA: Final[st.SearchStrategy[dict[str, Any]]] = st.fixed_dictionaries(
    {"message_id": IDS, "graph_id": IDS, "thread_id": IDS},
    optional={
        "inputs": st.none() | st.integers() | st.text(max_size=4),
        "attempt": st.sampled_from([1, 2, 0, -3, 2**40, True, 2.0, "2", None]),
        "retry_of": st.none() | IDS | st.just("nope"),
        "labels": st.sampled_from([{}, [], "", 0, None, {"team": "a"}, {"Bad": "x"}]),
    },
)
MOMENTS: Final = st.sampled_from(
    [
        datetime(2026, 11, 1, 12, tzinfo=UTC),
        datetime(2026, 11, 1, 12, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 1, 12),  # noqa: DTZ001 - naive: the model's to judge
    ]
)


def _validated(
    stream_id: uuid.UUID, data: dict[str, Any], at: datetime
) -> dict[str, Any] | None:
    try:
        return _created_validated(stream_id, data, at, 1, 7)
    except ValidationError:
        return None


@given(data=DATA, at=MOMENTS)
def test_the_quick_way_gives_the_validated_fields_or_steps_aside(
    data: dict[str, Any], at: datetime
) -> None:
    stream_id = uuid.uuid4()
    quick = _created_as_written(stream_id, data, at, 1, 7)
    validated = _validated(stream_id, data, at)
    event("quick" if quick is not None else "validated")
    if quick is None:
        return
    assert validated is not None
    assert list(quick) == list(validated)
    for name, value in quick.items():
        assert value == validated[name], name
        assert type(value) is type(validated[name]), name


@given(data=DATA)
def test_the_ids_as_written_are_the_validated_ids_text_or_step_aside(
    data: dict[str, Any],
) -> None:
    written = written_created(data)
    validated = _validated(uuid.uuid4(), data, datetime(2026, 11, 1, tzinfo=UTC))
    event("written" if written is not None else "validated")
    if written is None:
        return
    assert validated is not None
    assert type(written.attempt) is int  # not True, which equals 1
    retry_of = validated["retry_of"]
    assert written == (
        str(validated["message_id"]),
        str(validated["graph_id"]),
        str(validated["thread_id"]),
        validated["attempt"],
        None if retry_of is None else str(retry_of),
    )
    assert validated["labels"] == {}


def test_created_fields_still_refuses_what_the_model_refuses() -> None:
    data = {"message_id": "nope", "graph_id": "nope", "thread_id": "nope"}
    with pytest.raises(ValidationError, match="ExecutionCreated data"):
        created_fields(uuid.uuid4(), data, datetime.now(UTC), 1, 1)

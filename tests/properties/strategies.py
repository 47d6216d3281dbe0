"""Awkward values for generated calls: what a careless or hostile caller passes.

Wrong types, NUL and lone surrogates, NaN and infinities, integers beyond 64
and 1,000 bits and beyond what Python prints, -0.0 and the smallest double,
nesting around the canonical encoder's limit and 100,000 deep, a 20 MB
string, naive, ancient and far-future datetimes, ids that name nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from hypothesis import strategies as st


class Huge(int):
    """10**4301, more digits than Python prints (int_max_str_digits): a short repr."""

    def __repr__(self) -> str:
        return "Huge(10**4301)"


HUGE_INT: Final = Huge(10**4301)


class Deep(list[object]):
    """Lists nested `depth` deep, with a short repr for failure reports."""

    def __init__(self, depth: int) -> None:
        inner: list[object] = ["leaf"]
        for _ in range(depth - 1):
            inner = [inner]
        super().__init__(inner)
        self.depth = depth

    def __repr__(self) -> str:
        return f"Deep({self.depth})"


class Big(str):
    """A long string with a short repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Big({len(self):,} characters)"


# Built once: the 20 MB string and the 100,000-deep nesting cost to make.
BIG_STRING: Final = Big("x" * 20_000_000)
DEEPEST: Final = Deep(100_000)

NUMBERS: Final = st.sampled_from(
    [
        0,
        -0.0,
        5e-324,
        1e400,  # inf
        -1e400,
        float("nan"),
        2**53 + 1,
        2**63,
        -(2**63) - 1,
        2**64,
        2**992,
        2**1000,
        -(2**1000),
        HUGE_INT,
        1.5e300,
    ]
)
TEXTS: Final = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "\x00", "a\x00b", "\ud800", "x\udfff", "[/x]", "\x1b[2J", "é", "𝄞", " "]
    ),
)
MOMENTS: Final = st.one_of(
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            datetime(1, 1, 1, 4, tzinfo=timezone(timedelta(hours=5))),
            datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC),
            datetime(2026, 12, 3, 10, 0),  # noqa: DTZ001 - naive on purpose
        ]
    ),
)
SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    NUMBERS,
    TEXTS,
    st.binary(max_size=3),
    MOMENTS,
    st.uuids(),
    st.frozensets(st.integers(), max_size=2),
)
JSON_LIKE: Final = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(
            st.one_of(TEXTS, st.sampled_from([1, None, ("k",)])), children, max_size=3
        ),
    ),
    max_leaves=6,
)
GOOD_TEXT: Final = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
JSON: Final = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        GOOD_TEXT,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(GOOD_TEXT, children, max_size=3)
    ),
    max_leaves=6,
)
"""Well-formed JSON values: most calls should get far enough to be written."""
RARE: Final = st.one_of(
    st.sampled_from([63, 64, 65, 1000]).map(Deep),
    st.sampled_from([DEEPEST, BIG_STRING]),
)
AWKWARD: Final = st.integers(0, 49).flatmap(lambda n: RARE if n == 0 else JSON_LIKE)
"""Any value, JSON or not; one in fifty nested deep or very large."""


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, else anything at all.

    (one_of drops repeated strategies, so the weights are a sampled choice.)
    """
    return st.sampled_from([good] * 9 + [AWKWARD]).flatmap(lambda chosen: chosen)


VALUES: Final = mostly(JSON)


@dataclass(frozen=True)
class Known:
    """The n-th id of its kind that the test knows of (modulo how many there are)."""

    kind: str
    n: int


GARBAGE_IDS: Final = st.sampled_from(["not-a-uuid", "", 5, None, "00000000-0000"])


def ids(kind: str) -> st.SearchStrategy[Any]:
    """An id of `kind` the store holds, an unknown one, or not an id at all."""
    known = st.integers(0, 1_000).map(lambda n: Known(kind, n))
    return st.sampled_from([known] * 8 + [st.uuids(), GARBAGE_IDS]).flatmap(
        lambda chosen: chosen
    )


METADATA: Final = mostly(
    st.one_of(
        st.none(),
        st.fixed_dictionaries({}, optional={"actor": GOOD_TEXT, "k": JSON}),
    )
) | st.one_of(
    st.dictionaries(
        st.sampled_from(["actor", "correlation_id", "causation_id", "k", "\x00"]),
        st.one_of(TEXTS, AWKWARD),
        max_size=3,
    ),
    st.sampled_from([["a"], "ab", 5]),
)
METRICS: Final = mostly(
    st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "prompt_tokens": st.integers(0, 10**6),
                "cost_usd": st.floats(0, 10, allow_nan=False),
            },
        ),
    )
) | st.one_of(
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "cost_usd", "x", ""]),
        st.one_of(NUMBERS, st.integers(), st.floats(), TEXTS, st.booleans()),
        max_size=3,
    ),
    st.sampled_from(["lots", [1], 5]),
)
ERRORS: Final = st.one_of(
    st.fixed_dictionaries({"type": st.just("E"), "message": GOOD_TEXT}),
    st.fixed_dictionaries({"type": TEXTS, "message": TEXTS}),
    st.builds(ValueError, st.text(max_size=8)),
    VALUES,
)
TIMEOUTS: Final = st.sampled_from([0, 0.001, -1, float("nan"), "1", True, -0.0])


class ValidData:
    """Stands for well-formed data of the event's type, made when the call runs."""

    def __repr__(self) -> str:
        return "ValidData()"


VALID_DATA: Final = ValidData()
EVENT_TYPES: Final = st.sampled_from(
    [
        "ExecutionCreated",
        "ExecutionStarted",
        "ExecutionProgressed",
        "ExecutionCompleted",
        "ExecutionFailed",
        "ExecutionCancellationRequested",
        "ExecutionCancelled",
        "Note",
        "",
        "bad type!",
        "x" * 201,
    ]
)
EVENTS: Final = st.lists(
    st.fixed_dictionaries(
        {
            "type": mostly(EVENT_TYPES),
            "data": mostly(st.just(VALID_DATA)),
            "metadata": METADATA,
            "occurred_at": mostly(st.one_of(st.none(), MOMENTS)),
            "event_id": st.one_of(st.none(), st.none(), st.uuids(), GARBAGE_IDS),
            "schema_version": st.one_of(st.none(), st.none(), st.none(), AWKWARD),
        }
    ),
    min_size=0,  # none: refused
    max_size=3,
)

_COMMANDS: Final = (
    st.tuples(
        st.just("create"),
        st.fixed_dictionaries(
            {
                "message_id": ids("message"),
                "graph_id": ids("graph"),
                "inputs": VALUES,
                "idempotency_key": st.one_of(
                    st.none(), st.none(), GOOD_TEXT, TEXTS, AWKWARD
                ),
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("start"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "worker_id": mostly(st.just("worker-1")),
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("progress"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "step": mostly(st.one_of(GOOD_TEXT, st.integers())),
                "detail": VALUES,
                "metrics": METRICS,
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("complete"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "result": VALUES,
                "metrics": METRICS,
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("fail"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "error": ERRORS,
                "metrics": METRICS,
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("request_cancel"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "reason": st.one_of(st.none(), mostly(GOOD_TEXT), TEXTS),
                "requested_by": st.one_of(st.none(), mostly(GOOD_TEXT), TEXTS),
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("cancel"),
        st.fixed_dictionaries(
            {
                "execution_id": ids("execution"),
                "reason": st.one_of(st.none(), mostly(GOOD_TEXT), TEXTS),
                "metadata": METADATA,
            }
        ),
    ),
    st.tuples(
        st.just("retry"),
        st.fixed_dictionaries({"execution_id": ids("execution"), "metadata": METADATA}),
    ),
    st.tuples(
        st.just("heartbeat"),
        st.fixed_dictionaries(
            {"execution_id": ids("execution"), "worker_id": mostly(st.just("worker-1"))}
        ),
    ),
    st.tuples(
        st.just("wait"),
        st.fixed_dictionaries({"execution_id": ids("execution"), "timeout": TIMEOUTS}),
    ),
    st.tuples(
        st.just("append"),
        st.fixed_dictionaries(
            {
                "stream_id": ids("execution"),
                "events": EVENTS,
                "expected_version": mostly(st.sampled_from([None, None, 0, 1, 2, 3])),
                "stream_type": mostly(
                    st.sampled_from(["execution", "execution", "note", "system"])
                ),
            }
        ),
    ),
    st.tuples(st.just("thread"), st.fixed_dictionaries({"title": mostly(GOOD_TEXT)})),
    st.tuples(
        st.just("message"),
        st.fixed_dictionaries(
            {
                "thread_id": ids("thread"),
                "role": mostly(st.just("user")),
                "content": mostly(GOOD_TEXT),
            }
        ),
    ),
    st.tuples(
        st.just("graph"),
        st.fixed_dictionaries(
            {
                "name": mostly(st.just("crew")),
                "version": mostly(st.sampled_from(["1", 2])),
                "definition": VALUES,
            }
        ),
    ),
)
COMMANDS: Final = st.sampled_from([*_COMMANDS, *_COMMANDS[:5], _COMMANDS[10]]).flatmap(
    lambda chosen: chosen
)
"""One call of the public API: (name, keyword arguments); the commands that
move runs on (create, start, progress, complete, fail) and append twice as often."""

"""Where the time of `store.append` goes: cProfile of it and of raw asyncpg, side by side.

Both run in this process at the same writer count; the profiler is on for
the timed section only. cProfile's clock is the wall clock, so the time the
event loop spends blocked in epoll (waiting for the server) is shown apart
as "idle"; everything else is client CPU, grouped by the package it was
spent in (a function's own time, not its callees'). The profiler slows
Python code more than C code, so read the split, not the absolute numbers.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from bench import baselines, subjects
from bench.timing import time_writers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.databases import Server
    from bench.timing import AsyncTimer, AsyncWriter, Timing
    from bench.workload import Workload

IDLE: Final = "idle: event loop waiting in epoll"
CATEGORIES: Final = (
    "eventstore",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "asyncio event loop",
    "socket send/recv",
    "hashing",
    "json, uuid, datetime, other stdlib",
    "bench driver",
    "other builtins",
    IDLE,
)
"""Own time is grouped by the file a function is in; builtins such as
``str.join`` count for the package that called them."""
# Frames whose cumulative time is the whole run: left out of the top list.
_DRIVER_FRAMES: Final = (
    "/asyncio/",
    "/bench/",
    "_contextvars.Context",
    "builtins.exec",
)


@dataclass(frozen=True, slots=True)
class FunctionRow:
    """One function of the profile."""

    name: str
    calls: int
    own_seconds: float
    cumulative_seconds: float


@dataclass(frozen=True, slots=True)
class SubjectProfile:
    """One subject's profile.

    Attributes:
        key: the subject.
        events: events appended in the profiled section.
        seconds: its wall time (profiler on).
        categories: own time per category, seconds.
        top: functions by cumulative time, the event loop's frames left out.
        own_top: eventstore's and pydantic's functions by own time.
    """

    key: str
    events: int
    seconds: float
    categories: dict[str, float]
    top: list[FunctionRow]
    own_top: list[FunctionRow]

    def per_event_us(self, category: str) -> float:
        """Microseconds per event spent in a category."""
        return self.categories.get(category, 0.0) / self.events * 1e6

    @property
    def busy_us(self) -> float:
        """Client time per event, idle excluded."""
        return (
            sum(v for k, v in self.categories.items() if k != IDLE) / self.events * 1e6
        )


def _category(filename: str, function: str) -> str:
    if filename == "~":
        if "epoll" in function or "select" in function:
            return IDLE
        for needle, category in (
            ("socket", "socket send/recv"),
            ("hashlib", "hashing"),
            ("sha256", "hashing"),
            ("asyncpg", "asyncpg"),
            ("pydantic", "pydantic"),
            ("_asyncio", "asyncio event loop"),
            ("_contextvars", "asyncio event loop"),
            ("_json", "json, uuid, datetime, other stdlib"),
        ):
            if needle in function:
                return category
        return "other builtins"
    for needle, category in (
        ("/eventstore/", "eventstore"),
        ("/pydantic", "pydantic"),
        ("/sqlalchemy/", "sqlalchemy"),
        ("/asyncpg/", "asyncpg"),
        ("/asyncio/", "asyncio event loop"),
        ("selectors.py", "asyncio event loop"),
        ("/bench/", "bench driver"),
    ):
        if needle in filename:
            return category
    return "json, uuid, datetime, other stdlib"


def _short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    for marker in ("/site-packages/", "/work/main/", "/lib/python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = "stdlib/" + filename.split("/", 1)[1]
            break
    return f"{filename}:{line}({function})"


def _own_times(table: dict[Any, Any]) -> dict[str, float]:
    """Own time per category; a builtin's (str.join, isinstance ...) goes to its callers."""
    categories = dict.fromkeys(CATEGORIES, 0.0)
    for (filename, _, function), (_, _, own, _, callers) in table.items():
        category = _category(filename, function)
        if category != "other builtins" or not callers:
            categories[category] += own
            continue
        for (caller_file, _, caller_function), edge in callers.items():
            caller = _category(caller_file, caller_function)
            categories["other builtins" if caller == IDLE else caller] += edge[2]
    return categories


def summarize(
    key: str, profiler: cProfile.Profile, timing: Timing, events: int, *, top: int = 15
) -> SubjectProfile:
    """Group a profile's own times by category and list its top functions."""
    table: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [
        FunctionRow(
            name=_short(filename, line, function),
            calls=calls,
            own_seconds=own,
            cumulative_seconds=cumulative,
        )
        for (filename, line, function), (_, calls, own, cumulative, _) in table.items()
        if not any(frame in filename or frame in function for frame in _DRIVER_FRAMES)
    ]
    ours = [
        FunctionRow(
            name=_short(filename, line, function),
            calls=calls,
            own_seconds=own,
            cumulative_seconds=cumulative,
        )
        for (filename, line, function), (_, calls, own, cumulative, _) in table.items()
        if _category(filename, function) in ("eventstore", "pydantic")
    ]
    ours.sort(key=lambda row: row.own_seconds, reverse=True)
    rows.sort(key=lambda row: row.cumulative_seconds, reverse=True)
    return SubjectProfile(
        key=key,
        events=events,
        seconds=timing.seconds,
        categories=_own_times(table),
        top=rows[:top],
        own_top=ours[:top],
    )


def _profiled(profiler: cProfile.Profile) -> AsyncTimer:
    async def timer(writers: Sequence[AsyncWriter]) -> Timing:
        profiler.enable()
        try:
            return await time_writers(writers)
        finally:
            profiler.disable()

    return timer


def profile_append(
    server: Server, workload: Workload
) -> tuple[SubjectProfile, SubjectProfile]:
    """Profile raw asyncpg, then `store.append`, on the same workload."""
    raw_profiler = cProfile.Profile()
    raw = asyncio.run(
        baselines.raw_asyncpg(server, workload, timer=_profiled(raw_profiler))
    )
    store_profiler = cProfile.Profile()
    store = asyncio.run(
        subjects.store_append(
            "postgresql", server, workload, timer=_profiled(store_profiler)
        )
    )
    return (
        summarize("raw_asyncpg", raw_profiler, raw.timing, raw.events),
        summarize("store_append", store_profiler, store.timing, store.events),
    )
